// bin/tsrun's loader: maps the CLI bundle and its V8 code cache into memory instead of reading
// them. Every command starts by handing V8 the bundle's whole text (0.5-0.7 MB); read into a
// fresh buffer and copied once more into a V8 string, that took 10-12 ms on this project's
// machines (a page fault per 4 KiB page of each copy, ~20 us each on these VMs). A private
// mapping of the file, populated in one call, becomes an external V8 string without a copy: 1 ms.
//
// Part of the one addon (tsrun_native) since commands that need syscalls are nearly all of them:
// two addons cost a second dlopen and module registration, ~0.8 ms of each command. bin/tsrun
// loads it first, and src/native.ts gets the same, already loaded module.
//
// The mapping stays for the life of the process (V8 compiles functions lazily from the source),
// so the files must never be rewritten in place: scripts/bundle.mjs writes the bundles to a
// temporary name and renames them, and bin/tsrun writes the cache the same way. A file replaced
// by rename leaves the mapped (old) one intact.
// node_api_create_external_string_latin1 (Node 18.18 / 20.4) is declared for experimental builds
// only; binding.gyp sets NAPI_VERSION for the rest of the addon.
#undef NAPI_VERSION
#define NAPI_EXPERIMENTAL
#include <node_api.h>

#include "loader.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

namespace {

struct Mapping {
  void* data = nullptr;
  size_t size = 0;
};

void Unmap(node_api_basic_env /*env*/, void* data, void* hint) {
  munmap(data, reinterpret_cast<size_t>(hint));
}

napi_value Throw(napi_env env, const std::string& what, int err) {
  napi_throw_error(env, nullptr, (what + ": " + strerror(err)).c_str());
  return nullptr;
}

// Maps the file named by the call's first argument (read-only, private, every page present).
bool MapArgument(napi_env env, napi_callback_info info, Mapping* out, std::string* file) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok || argc < 1) {
    napi_throw_type_error(env, nullptr, "a file name is needed");
    return false;
  }
  size_t length = 0;
  if (napi_get_value_string_utf8(env, argv[0], nullptr, 0, &length) != napi_ok) {
    napi_throw_type_error(env, nullptr, "the file name must be a string");
    return false;
  }
  file->resize(length + 1);
  napi_get_value_string_utf8(env, argv[0], &(*file)[0], length + 1, &length);
  file->resize(length);
  int fd = open(file->c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    Throw(env, "open " + *file, errno);
    return false;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
    int err = errno;
    close(fd);
    Throw(env, "map " + *file, S_ISREG(st.st_mode) ? err : EINVAL);
    return false;
  }
  size_t size = static_cast<size_t>(st.st_size);
  void* data = mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  int err = errno;
  close(fd);
  if (data == MAP_FAILED) {
    Throw(env, "map " + *file, err);
    return false;
  }
  out->data = data;
  out->size = size;
  return true;
}

// Maps the file named by the call's argument and hands the mapping to wrap, which makes the
// JavaScript value owning it (and unmapping it when collected); what names the value in errors.
template <typename Wrap>
napi_value MapAs(napi_env env, napi_callback_info info, const char* what, Wrap wrap) {
  Mapping m;
  std::string file;
  if (!MapArgument(env, info, &m, &file)) return nullptr;
  napi_value value;
  if (wrap(m, &value) != napi_ok) {
    munmap(m.data, m.size);
    napi_throw_error(env, nullptr, (std::string("cannot make ") + what + " of " + file).c_str());
    return nullptr;
  }
  return value;
}

// mapText(file): the file's bytes as a one-byte (Latin-1) string. The bundles are pure ASCII
// (scripts/bundle.mjs checks), so this is the same text as reading them as UTF-8.
napi_value MapText(napi_env env, napi_callback_info info) {
  return MapAs(env, info, "a string", [env](const Mapping& m, napi_value* out) {
    bool copied = false;
    return node_api_create_external_string_latin1(env, static_cast<char*>(m.data), m.size, Unmap, reinterpret_cast<void*>(m.size), out, &copied);
  });
}

// mapBytes(file): the file's bytes as an ArrayBuffer over the mapping (read-only: writing to it
// would crash the process).
napi_value MapBytes(napi_env env, napi_callback_info info) {
  return MapAs(env, info, "a buffer", [env](const Mapping& m, napi_value* out) {
    return napi_create_external_arraybuffer(env, m.data, m.size, Unmap, reinterpret_cast<void*>(m.size), out);
  });
}

// exitNow(code): _exit(2). bin/tsrun ends the process with it once Node's exit handlers have run:
// Node's own exit first joins its worker and thread-pool threads and frees their stacks and
// V8's heap, 10-14 ms of a `run` here, none of which a process that is ending needs.
napi_value ExitNow(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg;
  int32_t code = 0;
  if (napi_get_cb_info(env, info, &argc, &arg, nullptr, nullptr) == napi_ok && argc == 1) napi_get_value_int32(env, arg, &code);
  _exit(code);
}

}  // namespace

void RegisterLoader(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "mapText", NAPI_AUTO_LENGTH, MapText, nullptr, &fn);
  napi_set_named_property(env, exports, "mapText", fn);
  napi_create_function(env, "mapBytes", NAPI_AUTO_LENGTH, MapBytes, nullptr, &fn);
  napi_set_named_property(env, exports, "mapBytes", fn);
  napi_create_function(env, "exitNow", NAPI_AUTO_LENGTH, ExitNow, nullptr, &fn);
  napi_set_named_property(env, exports, "exitNow", fn);
}
