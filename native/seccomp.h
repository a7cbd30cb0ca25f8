// The seccomp filter compiler exported by the addon (libseccomp; see seccomp.cc).
#pragma once
#include <napi.h>

namespace tsrun {
void RegisterSeccomp(Napi::Env env, Napi::Object exports);
}  // namespace tsrun
