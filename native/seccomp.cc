// compileSeccomp: turns a resolved filter (decided in TypeScript from a Docker profile) into a
// classic BPF program with libseccomp, in the parent, before any clone. libseccomp knows every
// architecture's syscall numbers, so a rule for "socketcall" or "clone" means the right number
// on x86_64, i386 and x32 alike. Only the addon links it: the monitor gets the program bytes.
#include "seccomp.h"

#include <errno.h>
#include <seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "fs.h"

namespace tsrun {
namespace {

// A libseccomp context freed on every return path.
struct Filter {
  scmp_filter_ctx ctx = nullptr;
  ~Filter() {
    if (ctx) seccomp_release(ctx);
  }
};

bool parse_u64(const std::string& s, uint64_t& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  out = strtoull(s.c_str(), &end, 10);
  return errno == 0 && end && *end == '\0';
}

// compileSeccomp({ defaultAction, arches: string[], rules: [{ name, action, args: [[index, op,
// value, valueTwo], ...] }] }) -> { program: Buffer, unknown: string[] }
// Actions are the kernel's SECCOMP_RET_* values (with the errno in the low bits); ops are
// libseccomp's scmp_compare numbers; values are decimal strings (64-bit). A rule whose syscall
// this libseccomp does not know is skipped and reported in `unknown`, as runc does.
Napi::Value CompileSeccomp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "compileSeccomp: expects a filter object").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object spec = info[0].As<Napi::Object>();
  uint32_t default_action = spec.Get("defaultAction").As<Napi::Number>().Uint32Value();
  Filter f;
  f.ctx = seccomp_init(default_action);
  if (!f.ctx) {
    Napi::Error::New(env, "seccomp: cannot create a filter with that default action").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  // tsrun sets no_new_privs itself when asked; the program is exported, never loaded here.
  seccomp_attr_set(f.ctx, SCMP_FLTATR_CTL_NNP, 0);
  Napi::Array arches = spec.Get("arches").As<Napi::Array>();
  for (uint32_t i = 0; i < arches.Length(); i++) {
    std::string name = arches.Get(i).As<Napi::String>().Utf8Value();
    uint32_t token = seccomp_arch_resolve_name(name.c_str());
    if (token == 0) {
      Napi::Error::New(env, "seccomp: unknown architecture " + name).ThrowAsJavaScriptException();
      return env.Undefined();
    }
    int rc = seccomp_arch_add(f.ctx, token);
    if (rc != 0 && rc != -EEXIST) {
      ErrnoError(env, -rc, "seccomp: add architecture " + name).ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  Napi::Array unknown = Napi::Array::New(env);
  Napi::Array rules = spec.Get("rules").As<Napi::Array>();
  for (uint32_t i = 0; i < rules.Length(); i++) {
    Napi::Object rule = rules.Get(i).As<Napi::Object>();
    std::string name = rule.Get("name").As<Napi::String>().Utf8Value();
    uint32_t action = rule.Get("action").As<Napi::Number>().Uint32Value();
    int nr = seccomp_syscall_resolve_name(name.c_str());
    if (nr == __NR_SCMP_ERROR) {
      unknown.Set(unknown.Length(), name);
      continue;
    }
    Napi::Array args = rule.Get("args").As<Napi::Array>();
    std::vector<struct scmp_arg_cmp> cmps;
    for (uint32_t j = 0; j < args.Length(); j++) {
      Napi::Array a = args.Get(j).As<Napi::Array>();
      struct scmp_arg_cmp c;
      memset(&c, 0, sizeof c);
      c.arg = a.Get(0u).As<Napi::Number>().Uint32Value();
      c.op = static_cast<enum scmp_compare>(a.Get(1u).As<Napi::Number>().Uint32Value());
      uint64_t v1 = 0, v2 = 0;
      if (!parse_u64(a.Get(2u).As<Napi::String>().Utf8Value(), v1) || !parse_u64(a.Get(3u).As<Napi::String>().Utf8Value(), v2)) {
        Napi::Error::New(env, "seccomp: bad argument value for " + name).ThrowAsJavaScriptException();
        return env.Undefined();
      }
      c.datum_a = v1;
      c.datum_b = v2;
      cmps.push_back(c);
    }
    int rc = seccomp_rule_add_array(f.ctx, action, nr, static_cast<unsigned>(cmps.size()), cmps.empty() ? nullptr : cmps.data());
    if (rc != 0) {
      ErrnoError(env, -rc, "seccomp: rule for " + name).ThrowAsJavaScriptException();
      return env.Undefined();
    }
  }
  // libseccomp 2.5 exports to a file descriptor only.
  int fd = memfd_create("tsrun-seccomp", MFD_CLOEXEC);
  if (fd < 0) {
    ErrnoError(env, errno, "seccomp: memfd_create").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  int rc = seccomp_export_bpf(f.ctx, fd);
  std::string program;
  if (rc == 0) {
    lseek(fd, 0, SEEK_SET);
    char buf[8192];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) program.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (rc != 0) {
    ErrnoError(env, -rc, "seccomp: export the filter").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("program", Napi::Buffer<char>::Copy(env, program.data(), program.size()));
  out.Set("unknown", unknown);
  return out;
}

// seccompVersion() -> "2.5.4": part of the key of cached programs.
Napi::Value SeccompVersion(const Napi::CallbackInfo& info) {
  const struct scmp_version* v = seccomp_version();
  return Napi::String::New(info.Env(), std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->micro));
}

}  // namespace

void RegisterSeccomp(Napi::Env env, Napi::Object exports) {
  exports.Set("compileSeccomp", Napi::Function::New(env, CompileSeccomp));
  exports.Set("seccompVersion", Napi::Function::New(env, SeccompVersion));
}

}  // namespace tsrun
