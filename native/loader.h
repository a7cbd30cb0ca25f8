// bin/tsrun's loader functions (loader.cc): mapText, mapBytes and exitNow, added to the addon's
// exports.
#pragma once
#include <node_api.h>

void RegisterLoader(napi_env env, napi_value exports);
