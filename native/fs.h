// In-root file operations: thin syscall wrappers used by the layer unpacker and `cp`.
// Every path is resolved with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) or is a single
// name relative to a directory fd that was itself resolved that way.
#pragma once
#include <napi.h>

namespace tsrun {
void RegisterFs(Napi::Env env, Napi::Object exports);
Napi::Error ErrnoError(Napi::Env env, int err, const std::string& what);
}  // namespace tsrun
