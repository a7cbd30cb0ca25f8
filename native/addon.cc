// The exported functions and their argument checks. Policy lives in TypeScript (src/native.ts
// types every function here); this file only turns JS values into syscalls and back.
#include <errno.h>
#include <fcntl.h>
#include <napi.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include "fs.h"
#include "loader.h"
#include "seccomp.h"
#include "netns.h"
#include "spawn.h"

extern char** environ;

namespace tsrun {
namespace {

// spawn(plan: Buffer) -> { pid, pidfd, syncFd, errorFd, socketFd }
Napi::Value Spawn(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBuffer()) {
    Napi::TypeError::New(env, "spawn: plan must be a Buffer").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Buffer<char> buf = info[0].As<Napi::Buffer<char>>();
  LaunchPlan plan;
  std::string err = decode_plan(buf.Data(), buf.Length(), plan);
  if (!err.empty()) {
    Napi::Error::New(env, "spawn: bad plan: " + err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Launched out;
  err = launch(plan, out);
  if (!err.empty()) {
    Napi::Error::New(env, err).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", out.pid);
  o.Set("pidfd", out.pidfd);
  o.Set("syncFd", out.sync_fd);
  o.Set("errorFd", out.error_fd);
  o.Set("socketFd", out.socket_fd);
  return o;
}

// resume(syncFd, errorFd, socketFd, tty) -> { ptyFd, pid, error?: { errno, kind, step } }
// pid is the command's: the spawned process itself, or for an exec into a container the process
// it cloned into the container's pid namespace.
// Lets the child go on, then blocks until it has exec'd (error pipe closed) or failed.
Napi::Value Resume(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int sync_fd = info[0].As<Napi::Number>().Int32Value();
  int error_fd = info[1].As<Napi::Number>().Int32Value();
  int socket_fd = info[2].As<Napi::Number>().Int32Value();
  bool tty = info[3].As<Napi::Boolean>();
  Launched l;
  l.sync_fd = sync_fd;
  l.error_fd = error_fd;
  l.socket_fd = socket_fd;
  int pty = -1;
  ChildError ce;
  pid_t command_pid = -1;
  bool ok = resume(l, tty, pty, ce, &command_pid);
  Napi::Object o = Napi::Object::New(env);
  o.Set("ptyFd", pty);
  o.Set("pid", command_pid);
  if (!ok && ce.kind >= 0) {
    o.Set("ptyFd", -1);
    Napi::Object e = Napi::Object::New(env);
    ce.step[sizeof ce.step - 1] = '\0';
    e.Set("errno", ce.err);
    e.Set("kind", ce.kind);
    e.Set("step", Napi::String::New(env, ce.step));
    e.Set("message", Napi::String::New(env, ce.err ? strerror(ce.err) : ""));
    o.Set("error", e);
  }
  return o;
}

// Waits for a child in the thread pool: libuv reaps only the children it spawned itself.
class WaitWorker : public Napi::AsyncWorker {
 public:
  WaitWorker(Napi::Env env, pid_t pid) : Napi::AsyncWorker(env), pid_(pid), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise Promise() { return deferred_.Promise(); }
  void Execute() override {
    int status = 0;
    pid_t r;
    do {
      r = waitpid(pid_, &status, __WALL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
      err_ = errno;
      return;
    }
    if (WIFEXITED(status)) code_ = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) signal_ = WTERMSIG(status);
  }
  void OnOK() override {
    Napi::Env env = Env();
    if (err_) {
      deferred_.Reject(ErrnoError(env, err_, "waitpid " + std::to_string(pid_)).Value());
      return;
    }
    Napi::Object o = Napi::Object::New(env);
    o.Set("code", code_);
    o.Set("signal", signal_);
    deferred_.Resolve(o);
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

 private:
  pid_t pid_;
  int code_ = -1, signal_ = 0, err_ = 0;
  Napi::Promise::Deferred deferred_;
};

Napi::Value WaitPid(const Napi::CallbackInfo& info) {
  auto* w = new WaitWorker(info.Env(), info[0].As<Napi::Number>().Int32Value());
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value SetWinsize(const Napi::CallbackInfo& info) {
  struct winsize ws;
  memset(&ws, 0, sizeof ws);
  ws.ws_row = static_cast<unsigned short>(info[1].As<Napi::Number>().Uint32Value());
  ws.ws_col = static_cast<unsigned short>(info[2].As<Napi::Number>().Uint32Value());
  if (ioctl(info[0].As<Napi::Number>().Int32Value(), TIOCSWINSZ, &ws) != 0) {
    ErrnoError(info.Env(), errno, "set window size").ThrowAsJavaScriptException();
  }
  return info.Env().Undefined();
}

Napi::Value StrError(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), strerror(info[0].As<Napi::Number>().Int32Value()));
}

// pipe(capacity?) -> [readFd, writeFd], both close-on-exec; grown to capacity bytes if given.
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    ErrnoError(info.Env(), errno, "pipe").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  if (info.Length() > 0 && info[0].IsNumber()) {
    // Best effort: a refused size (over /proc/sys/fs/pipe-max-size, or the user's pipe quota)
    // leaves the kernel's default, which only costs speed.
    (void)fcntl(p[1], F_SETPIPE_SZ, info[0].As<Napi::Number>().Int32Value());
  }
  Napi::Array a = Napi::Array::New(info.Env(), 2);
  a.Set(0u, p[0]);
  a.Set(1u, p[1]);
  return a;
}

// dup(fd) -> a close-on-exec copy of fd.
Napi::Value Dup(const Napi::CallbackInfo& info) {
  int fd = fcntl(info[0].As<Napi::Number>().Int32Value(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) {
    ErrnoError(info.Env(), errno, "dup").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), fd);
}

// flock(fd, exclusive, wait) -> boolean (false: would block). Released when the process dies,
// so a killed tsrun never leaves the store locked.
Napi::Value Flock(const Napi::CallbackInfo& info) {
  int fd = info[0].As<Napi::Number>().Int32Value();
  int op = (info[1].As<Napi::Boolean>() ? LOCK_EX : LOCK_SH) | (info[2].As<Napi::Boolean>() ? 0 : LOCK_NB);
  int r;
  do {
    r = flock(fd, op);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EWOULDBLOCK) return Napi::Boolean::New(info.Env(), false);
    ErrnoError(info.Env(), errno, "flock").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Boolean::New(info.Env(), true);
}

// runTools([[argv...], ...]) -> [{code, signal}]: starts every command with posix_spawn (vfork:
// no copy of Node's page tables, unlike libuv's fork) and waits for all. For newuidmap and
// newgidmap, which run on every container start.
Napi::Value RunTools(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array cmds = info[0].As<Napi::Array>();
  std::vector<pid_t> pids;
  std::vector<int> errs;
  std::vector<std::string> errors;
  for (uint32_t i = 0; i < cmds.Length(); i++) {
    Napi::Array a = cmds.Get(i).As<Napi::Array>();
    std::vector<std::string> args;
    for (uint32_t j = 0; j < a.Length(); j++) args.push_back(a.Get(j).As<Napi::String>().Utf8Value());
    std::vector<char*> argv;
    for (auto& s : args) argv.push_back(&s[0]);
    argv.push_back(nullptr);
    // Each tool's stderr is captured, so the caller can explain a failure in one line.
    int p[2] = {-1, -1};
    if (pipe2(p, O_CLOEXEC) != 0) p[0] = p[1] = -1;
    pid_t pid = -1;
    int rc = spawn_tool(pid, argv.data(), p[1]);
    if (p[1] >= 0) close(p[1]);
    pids.push_back(rc == 0 ? pid : -1);
    errs.push_back(p[0]);
    errors.push_back(rc == 0 ? "" : args[0] + ": " + strerror(rc));
  }
  Napi::Array out = Napi::Array::New(env, pids.size());
  for (uint32_t i = 0; i < pids.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    if (pids[i] < 0) {
      o.Set("code", 127);
      o.Set("signal", 0);
      o.Set("error", errors[i]);
    } else {
      int status = 0;
      pid_t r;
      do {
        r = waitpid(pids[i], &status, 0);
      } while (r < 0 && errno == EINTR);
      o.Set("code", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
      o.Set("signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    }
    // After the exit, take what is in the pipe without waiting: a daemonizing tool (pasta)
    // may leave a child holding the write end. Tool messages are far below a pipe's capacity.
    std::string stderr_text;
    if (errs[i] >= 0) {
      fcntl(errs[i], F_SETFL, O_NONBLOCK);
      char buf[4096];
      ssize_t n;
      while ((n = read(errs[i], buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) stderr_text.append(buf, static_cast<size_t>(n));
      close(errs[i]);
    }
    o.Set("stderr", stderr_text);
    out.Set(i, o);
  }
  return out;
}

// spawnDetached(path, args, fd3, fd4) -> pid: starts a program in its own session with
// /dev/null on 0-2, fd3 as its fd 3 and fd4 (when >= 0) as its fd 4; nothing else is inherited
// (Node's fds are close-on-exec). Nothing waits for it. The container monitor (fd 3: its ready
// pipe, fd 4: the connection to the network holder) outlives the CLI; a foreground run's
// slirp4netns (fd 3: its ready pipe, fd 4: its exit pipe) lives as long as the run.
Napi::Value SpawnDetached(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  Napi::Array a = info[1].As<Napi::Array>();
  int ready = info[2].As<Napi::Number>().Int32Value();
  std::vector<std::string> args{path};
  for (uint32_t i = 0; i < a.Length(); i++) args.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  std::vector<char*> argv;
  for (auto& s : args) argv.push_back(&s[0]);
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, ready, 3);
  int netns_fd = info.Length() > 3 ? info[3].As<Napi::Number>().Int32Value() : -1;
  if (netns_fd >= 0) posix_spawn_file_actions_adddup2(&fa, netns_fd, 4);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  sigset_t all;
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, path.c_str(), &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    ErrnoError(env, rc, "start " + path).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, pid);
}

// pollIn(fd, timeoutMs) -> true once fd is readable (or its writers are gone), false when
// timeoutMs pass first: a bounded wait for a helper's ready pipe, which read(2) alone would
// wait on forever if the helper hung.
Napi::Value PollIn(const Napi::CallbackInfo& info) {
  pollfd p = {info[0].As<Napi::Number>().Int32Value(), POLLIN, 0};
  int timeout = info[1].As<Napi::Number>().Int32Value();
  int rc;
  do {
    rc = poll(&p, 1, timeout);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    ErrnoError(info.Env(), errno, "poll").ThrowAsJavaScriptException();
    return info.Env().Undefined();
  }
  return Napi::Boolean::New(info.Env(), rc > 0);
}

// mount(source, target, fstype, flags, data): mount(2) for the storage worker, which runs as
// root of its own user+mount namespace (an overlay of a container's layers for `export`).
// Node has no binding for it. Throws an Error with code/errno on failure.
Napi::Value Mount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 5 || !info[0].IsString() || !info[1].IsString() || !info[2].IsString() || !info[3].IsNumber() ||
      !info[4].IsString()) {
    Napi::TypeError::New(env, "mount(source, target, fstype, flags, data) expects strings and a number")
        .ThrowAsJavaScriptException();
    return env.Undefined();
  }
  std::string source = info[0].As<Napi::String>().Utf8Value();
  std::string target = info[1].As<Napi::String>().Utf8Value();
  std::string fstype = info[2].As<Napi::String>().Utf8Value();
  unsigned long flags = static_cast<unsigned long>(info[3].As<Napi::Number>().Int64Value());
  std::string data = info[4].As<Napi::String>().Utf8Value();
  if (mount(source.c_str(), target.c_str(), fstype.c_str(), flags, data.empty() ? nullptr : data.c_str()) != 0) {
    ErrnoError(env, errno, "mount " + fstype + " on " + target).ThrowAsJavaScriptException();
  }
  return env.Undefined();
}

// netnsConnect(socketPath) -> { fd, pid }: a connection to the network holder (tsrun-netns)
// and its pid. Throws with code ENOENT/ECONNREFUSED (none listens) or ECONNRESET (it was exiting).
Napi::Value NetnsConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  pid_t pid = 0;
  int fd = netns_connect(info[0].As<Napi::String>().Utf8Value(), pid);
  if (fd < 0) {
    ErrnoError(env, errno, "connect to the network holder").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", fd);
  o.Set("pid", pid);
  return o;
}

// netnsRequest(fd, line) -> reply ("ok ..." or "err MESSAGE"); blocks (bounded) for the answer.
Napi::Value NetnsRequest(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), netns_request(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::String>().Utf8Value()));
}

// netnsNewNetwork(fd) -> the fd of a new network namespace owned by the holder's user namespace
// (close-on-exec); throws with the holder's reason.
Napi::Value NetnsNewNetwork(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int received = -1;
  std::string reply = netns_request_fd(info[0].As<Napi::Number>().Int32Value(), "newnet", received);
  if (reply.compare(0, 2, "ok") != 0) {
    if (received >= 0) close(received);
    Napi::Error::New(env, reply.compare(0, 4, "err ") == 0 ? reply.substr(4) : reply).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  return Napi::Number::New(env, received);
}

Napi::Object InitExports(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsConnect", Napi::Function::New(env, NetnsConnect));
  exports.Set("netnsRequest", Napi::Function::New(env, NetnsRequest));
  exports.Set("netnsNewNetwork", Napi::Function::New(env, NetnsNewNetwork));
  exports.Set("spawn", Napi::Function::New(env, Spawn));
  exports.Set("resume", Napi::Function::New(env, Resume));
  exports.Set("waitPid", Napi::Function::New(env, WaitPid));
  exports.Set("setWinsize", Napi::Function::New(env, SetWinsize));
  exports.Set("strerror", Napi::Function::New(env, StrError));
  exports.Set("pipe", Napi::Function::New(env, Pipe));
  exports.Set("dup", Napi::Function::New(env, Dup));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("runTools", Napi::Function::New(env, RunTools));
  exports.Set("spawnDetached", Napi::Function::New(env, SpawnDetached));
  exports.Set("pollIn", Napi::Function::New(env, PollIn));
  exports.Set("mount", Napi::Function::New(env, Mount));
  RegisterFs(env, exports);
  RegisterSeccomp(env, exports);
  RegisterLoader(env, exports);
  return exports;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) { return InitExports(env, exports); }
}  // namespace tsrun

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return tsrun::Init(env, exports); }
NODE_API_MODULE(tsrun_native, InitModule)
