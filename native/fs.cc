#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <string>

namespace tsrun {

Napi::Error ErrnoError(Napi::Env env, int err, const std::string& what) {
  Napi::Error e = Napi::Error::New(env, what + ": " + strerror(err));
  const char* name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  e.Set("errno", Napi::Number::New(env, err));
  return e;
}

namespace {

std::string proc_fd(int fd) { return "/proc/self/fd/" + std::to_string(fd); }

int Int(const Napi::CallbackInfo& info, size_t i) { return info[i].As<Napi::Number>().Int32Value(); }

// File names come as strings in which a byte that is not valid UTF-8 is a lone surrogate
// U+DC80..U+DCFF (src/store/file-names.ts): those become their bytes again.
std::string EscapedNameBytes(const std::u16string& text) {
  std::string out;
  out.reserve(text.size() * 3);
  for (size_t i = 0; i < text.size(); i++) {
    uint32_t c = text[i];
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.size() && text[i + 1] >= 0xdc00 && text[i + 1] <= 0xdfff) {
      c = 0x10000 + ((c - 0xd800) << 10) + (text[i + 1] - 0xdc00);
      i++;
    } else if (c >= 0xdc80 && c <= 0xdcff) {
      out += static_cast<char>(c - 0xdc00);
      continue;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      c = 0xfffd;
    }
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xc0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xe0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
      out += static_cast<char>(0xf0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
      out += static_cast<char>(0x80 | (c & 0x3f));
    }
  }
  return out;
}

std::string Str(const Napi::CallbackInfo& info, size_t i) {
  Napi::String value = info[i].As<Napi::String>();
  std::string utf8 = value.Utf8Value();
  // A lone surrogate came out as U+FFFD: only then is the slower exact conversion needed.
  if (utf8.find("\xef\xbf\xbd") == std::string::npos) return utf8;
  return EscapedNameBytes(value.Utf16Value());
}

// Length of a valid UTF-8 sequence at s[i], 0 when none starts there (as file-names.ts decides).
size_t Utf8SequenceLength(const unsigned char* s, size_t i, size_t end) {
  unsigned char b = s[i];
  auto cont = [&](size_t k, unsigned char lo = 0x80, unsigned char hi = 0xbf) { return i + k < end && s[i + k] >= lo && s[i + k] <= hi; };
  if (b < 0x80) return 1;
  if (b >= 0xc2 && b <= 0xdf) return cont(1) ? 2 : 0;
  if (b == 0xe0) return cont(1, 0xa0) && cont(2) ? 3 : 0;
  if (b == 0xed) return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0;
  if (b >= 0xe1 && b <= 0xef) return cont(1) && cont(2) ? 3 : 0;
  if (b == 0xf0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (b >= 0xf1 && b <= 0xf3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (b == 0xf4) return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

// A name as a string in the escaped form above.
Napi::String NameString(Napi::Env env, const char* data, size_t length) {
  const unsigned char* s = reinterpret_cast<const unsigned char*>(data);
  size_t valid = 0;
  while (valid < length) {
    size_t n = Utf8SequenceLength(s, valid, length);
    if (n == 0) break;
    valid += n;
  }
  if (valid == length) return Napi::String::New(env, data, length);
  std::u16string out;
  for (size_t i = 0; i < length;) {
    size_t n = Utf8SequenceLength(s, i, length);
    if (n == 0) {
      out += static_cast<char16_t>(0xdc00 + s[i]);
      i++;
      continue;
    }
    uint32_t c = n == 1 ? s[i] : n == 2 ? (s[i] & 0x1f) : n == 3 ? (s[i] & 0x0f) : (s[i] & 0x07);
    for (size_t k = 1; k < n; k++) c = (c << 6) | (s[i + k] & 0x3f);
    if (c >= 0x10000) {
      out += static_cast<char16_t>(0xd800 + ((c - 0x10000) >> 10));
      out += static_cast<char16_t>(0xdc00 + ((c - 0x10000) & 0x3ff));
    } else {
      out += static_cast<char16_t>(c);
    }
    i += n;
  }
  return Napi::String::New(env, out);
}

// openInRoot(rootFd, path, flags, mode) -> fd. Symlinks and ".." never leave rootFd.
Napi::Value OpenInRoot(const Napi::CallbackInfo& info) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<unsigned long long>(Int(info, 2)) | O_CLOEXEC;
  if (how.flags & (O_CREAT | O_TMPFILE)) how.mode = static_cast<unsigned>(Int(info, 3));
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string path = Str(info, 1);
  int fd = static_cast<int>(syscall(SYS_openat2, Int(info, 0), path.c_str(), &how, sizeof how));
  if (fd < 0) {
    ErrnoError(info.Env(), errno, "open " + path).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), fd);
}

// readInto(fd, buffer, offset, length) -> bytes read (0 at the end): read(2) into a Buffer, EINTR
// retried. fs.readSync does the same with argument checks that made ~0.5 KB of garbage a call:
// a commit reads every new file of the change once.
Napi::Value ReadInto(const Napi::CallbackInfo& info) {
  Napi::Buffer<uint8_t> buf = info[1].As<Napi::Buffer<uint8_t>>();
  size_t offset = static_cast<size_t>(Int(info, 2));
  size_t length = static_cast<size_t>(Int(info, 3));
  if (offset > buf.Length() || length > buf.Length() - offset) {
    Napi::RangeError::New(info.Env(), "readInto: offset and length outside the buffer").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  ssize_t n;
  do n = read(Int(info, 0), buf.Data() + offset, length);
  while (n < 0 && errno == EINTR);
  if (n < 0) {
    ErrnoError(info.Env(), errno, "read").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), static_cast<double>(n));
}

// startWriteback(fd): sync_file_range(SYNC_FILE_RANGE_WRITE) over the whole file: its dirty pages
// start going to disk (and get their blocks) without waiting. Called for each of a few files
// before they are fsynced one by one, the later fsyncs find their data written and their blocks
// in the journal transaction the first one committed.
Napi::Value StartWriteback(const Napi::CallbackInfo& info) {
  if (sync_file_range(Int(info, 0), 0, 0, SYNC_FILE_RANGE_WRITE) != 0) {
    ErrnoError(info.Env(), errno, "sync_file_range").ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

// openAt(dirFd, name, flags, mode) -> fd: one component, O_NOFOLLOW is the caller's choice.
Napi::Value OpenAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  int fd = openat(Int(info, 0), name.c_str(), Int(info, 2) | O_CLOEXEC, static_cast<mode_t>(Int(info, 3)));
  if (fd < 0) {
    ErrnoError(info.Env(), errno, "open " + name).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), fd);
}

#define CHECK(expr, what)                                                 \
  do {                                                                    \
    if ((expr) != 0) {                                                    \
      ErrnoError(info.Env(), errno, what).ThrowAsJavaScriptException();  \
      return info.Env().Undefined();                                      \
    }                                                                     \
  } while (0)

Napi::Value MkdirAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  CHECK(mkdirat(Int(info, 0), name.c_str(), static_cast<mode_t>(Int(info, 2))), "mkdir " + name);
  return info.Env().Undefined();
}

Napi::Value SymlinkAt(const Napi::CallbackInfo& info) {
  std::string target = Str(info, 0), name = Str(info, 2);
  CHECK(symlinkat(target.c_str(), Int(info, 1), name.c_str()), "symlink " + name);
  return info.Env().Undefined();
}

// linkAt(existingFd, dirFd, name): hard link to an inode held by an O_PATH fd. Going through
// /proc/self/fd with AT_SYMLINK_FOLLOW needs no capability, unlike AT_EMPTY_PATH.
Napi::Value LinkAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 2);
  std::string src = proc_fd(Int(info, 0));
  CHECK(linkat(AT_FDCWD, src.c_str(), Int(info, 1), name.c_str(), AT_SYMLINK_FOLLOW), "link " + name);
  return info.Env().Undefined();
}

Napi::Value MknodAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  dev_t dev = makedev(static_cast<unsigned>(Int(info, 3)), static_cast<unsigned>(Int(info, 4)));
  CHECK(mknodat(Int(info, 0), name.c_str(), static_cast<mode_t>(Int(info, 2)), dev), "mknod " + name);
  return info.Env().Undefined();
}

// chownAt(dirFd, name, uid, gid): never follows a symlink (name "" means dirFd itself).
Napi::Value ChownAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  int flags = AT_SYMLINK_NOFOLLOW | (name.empty() ? AT_EMPTY_PATH : 0);
  CHECK(fchownat(Int(info, 0), name.c_str(), static_cast<uid_t>(Int(info, 2)), static_cast<gid_t>(Int(info, 3)), flags),
        "chown " + name);
  return info.Env().Undefined();
}

// chmodFd(fd, mode): works for O_PATH fds through the magic link (never for symlinks).
Napi::Value ChmodFd(const Napi::CallbackInfo& info) {
  std::string p = proc_fd(Int(info, 0));
  CHECK(chmod(p.c_str(), static_cast<mode_t>(Int(info, 1))), "chmod");
  return info.Env().Undefined();
}

// setXattrFd(fd, name, value: Buffer)
Napi::Value SetXattrFd(const Napi::CallbackInfo& info) {
  std::string p = proc_fd(Int(info, 0)), name = Str(info, 1);
  Napi::Buffer<char> value = info[2].As<Napi::Buffer<char>>();
  CHECK(setxattr(p.c_str(), name.c_str(), value.Data(), value.Length(), 0), "setxattr " + name);
  return info.Env().Undefined();
}

// getXattrs(fd) -> { name: Buffer } for the inode behind an O_PATH fd.
Napi::Value GetXattrs(const Napi::CallbackInfo& info) {
  std::string p = proc_fd(Int(info, 0));
  Napi::Object out = Napi::Object::New(info.Env());
  ssize_t n = listxattr(p.c_str(), nullptr, 0);
  if (n <= 0) return out;
  std::string names(static_cast<size_t>(n), '\0');
  n = listxattr(p.c_str(), &names[0], names.size());
  if (n <= 0) return out;
  for (size_t i = 0; i < static_cast<size_t>(n);) {
    std::string name(&names[i]);
    i += name.size() + 1;
    ssize_t len = getxattr(p.c_str(), name.c_str(), nullptr, 0);
    if (len < 0) continue;
    std::string value(static_cast<size_t>(len), '\0');
    len = getxattr(p.c_str(), name.c_str(), &value[0], value.size());
    if (len < 0) continue;
    out.Set(name, Napi::Buffer<char>::Copy(info.Env(), value.data(), static_cast<size_t>(len)));
  }
  return out;
}

// utimesAt(dirFd, name, atimeSec, atimeNsec, mtimeSec, mtimeNsec): on the entry itself.
Napi::Value UtimesAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  struct timespec ts[2];
  ts[0].tv_sec = info[2].As<Napi::Number>().Int64Value();
  ts[0].tv_nsec = Int(info, 3);
  ts[1].tv_sec = info[4].As<Napi::Number>().Int64Value();
  ts[1].tv_nsec = Int(info, 5);
  if (name.empty()) {
    // The fd itself (possibly O_PATH): go through its magic link.
    std::string p = proc_fd(Int(info, 0));
    CHECK(utimensat(AT_FDCWD, p.c_str(), ts, 0), "utimes");
  } else {
    CHECK(utimensat(Int(info, 0), name.c_str(), ts, AT_SYMLINK_NOFOLLOW), "utimes " + name);
  }
  return info.Env().Undefined();
}

// futimens(fd, atimeSec, atimeNsec, mtimeSec, mtimeNsec): an fd open for reading or writing
// (not O_PATH); no path lookup, unlike utimesAt(fd, "").
Napi::Value Futimens(const Napi::CallbackInfo& info) {
  struct timespec ts[2];
  ts[0].tv_sec = info[1].As<Napi::Number>().Int64Value();
  ts[0].tv_nsec = Int(info, 2);
  ts[1].tv_sec = info[3].As<Napi::Number>().Int64Value();
  ts[1].tv_nsec = Int(info, 4);
  CHECK(futimens(Int(info, 0), ts), "utimes");
  return info.Env().Undefined();
}

Napi::Value UnlinkAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  CHECK(unlinkat(Int(info, 0), name.c_str(), info[2].As<Napi::Boolean>() ? AT_REMOVEDIR : 0), "remove " + name);
  return info.Env().Undefined();
}

Napi::Value RenameAt(const Napi::CallbackInfo& info) {
  std::string from = Str(info, 1), to = Str(info, 3);
  CHECK(renameat(Int(info, 0), from.c_str(), Int(info, 2), to.c_str()), "rename " + from);
  return info.Env().Undefined();
}

Napi::Value ReadlinkAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  char buf[4096];
  ssize_t n = readlinkat(Int(info, 0), name.c_str(), buf, sizeof buf);
  if (n < 0) {
    ErrnoError(info.Env(), errno, "readlink " + name).ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return NameString(info.Env(), buf, static_cast<size_t>(n));
}

// lstatAt(dirFd, name) -> [mode, uid, gid, size, mtimeSec, mtimeNsec, rdevMajor, rdevMinor, nlink, ino, dev]
Napi::Value LstatAt(const Napi::CallbackInfo& info) {
  std::string name = Str(info, 1);
  struct stat st;
  int flags = AT_SYMLINK_NOFOLLOW | (name.empty() ? AT_EMPTY_PATH : 0);
  CHECK(fstatat(Int(info, 0), name.c_str(), &st, flags), "stat " + name);
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env, 11);
  double vals[11] = {static_cast<double>(st.st_mode), static_cast<double>(st.st_uid), static_cast<double>(st.st_gid),
                     static_cast<double>(st.st_size), static_cast<double>(st.st_mtim.tv_sec),
                     static_cast<double>(st.st_mtim.tv_nsec), static_cast<double>(major(st.st_rdev)),
                     static_cast<double>(minor(st.st_rdev)), static_cast<double>(st.st_nlink),
                     static_cast<double>(st.st_ino), static_cast<double>(st.st_dev)};
  for (uint32_t i = 0; i < 11; i++) a.Set(i, Napi::Number::New(env, vals[i]));
  return a;
}

}  // namespace

void RegisterFs(Napi::Env env, Napi::Object exports) {
  exports.Set("openInRoot", Napi::Function::New(env, OpenInRoot));
  exports.Set("openAt", Napi::Function::New(env, OpenAt));
  exports.Set("readInto", Napi::Function::New(env, ReadInto));
  exports.Set("startWriteback", Napi::Function::New(env, StartWriteback));
  exports.Set("mkdirAt", Napi::Function::New(env, MkdirAt));
  exports.Set("symlinkAt", Napi::Function::New(env, SymlinkAt));
  exports.Set("linkAt", Napi::Function::New(env, LinkAt));
  exports.Set("mknodAt", Napi::Function::New(env, MknodAt));
  exports.Set("chownAt", Napi::Function::New(env, ChownAt));
  exports.Set("chmodFd", Napi::Function::New(env, ChmodFd));
  exports.Set("setXattrFd", Napi::Function::New(env, SetXattrFd));
  exports.Set("getXattrs", Napi::Function::New(env, GetXattrs));
  exports.Set("utimesAt", Napi::Function::New(env, UtimesAt));
  exports.Set("futimens", Napi::Function::New(env, Futimens));
  exports.Set("unlinkAt", Napi::Function::New(env, UnlinkAt));
  exports.Set("renameAt", Napi::Function::New(env, RenameAt));
  exports.Set("readlinkAt", Napi::Function::New(env, ReadlinkAt));
  exports.Set("lstatAt", Napi::Function::New(env, LstatAt));
}

}  // namespace tsrun
