// tsrun-monitor: the parent of a detached container's init. It outlives the CLI that started
// it, holds the container's output pipes (or pty), writes the log as JSON lines like Docker's
// json-file driver, and records the exit status. It is a small C++ program, not Node, so that
// each detached container costs about what Podman's conmon costs.
//
// Usage: tsrun-monitor CONTAINER_DIR   (fd 3: the ready pipe to the CLI)
// CONTAINER_DIR holds:
//   plan.bin   the launch plan in the addon's wire format (written by tsrun)
//   idmap      how to map ids: lines "tool PROGRAM ARGS..." (the child's pid is inserted as the
//              first argument) or "write FILE CONTENT" (written to /proc/PID/FILE)
//   ctr.log    the log, appended: {"log":"...","stream":"stdout","time":"..."}
//   exit       written atomically when the container ends: "CODE FINISHED_AT\n"
//   autoremove optional: a command line (one argument a line) exec'd after the exit is recorded
// The ready pipe gets "ok PID\n" once the command runs, or "err KIND ERRNO STEP\n".
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "spawn.h"

extern char** environ;

namespace {

const int kReadyFd = 3;
std::string g_dir;

void write_all(int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    ssize_t n = write(fd, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

void report_ready(const std::string& line) {
  write_all(kReadyFd, line);
  close(kReadyFd);
}

[[noreturn]] void fail(const std::string& step, int err) {
  report_ready("err 0 " + std::to_string(err) + " " + step + "\n");
  _exit(125);
}

// RFC 3339 with nanoseconds, UTC, as Docker writes log times.
std::string now_rfc3339() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
           tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
  return buf;
}

std::string json_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char u[8];
          snprintf(u, sizeof u, "\\u%04x", c);
          out += u;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out;
}

// One output stream: bytes are cut into lines; each line becomes one log record.
struct Stream {
  int fd;
  const char* name;
  std::string pending;
};

void log_record(int log_fd, const Stream& s, const std::string& text) {
  write_all(log_fd, "{\"log\":\"" + json_escape(text) + "\",\"stream\":\"" + s.name + "\",\"time\":\"" + now_rfc3339() + "\"}\n");
}

void consume(int log_fd, Stream& s, const char* data, size_t n) {
  s.pending.append(data, n);
  size_t start = 0;
  for (size_t i = 0; i < s.pending.size(); i++) {
    if (s.pending[i] == '\n') {
      log_record(log_fd, s, s.pending.substr(start, i - start + 1));
      start = i + 1;
    }
  }
  s.pending.erase(0, start);
  // A very long line is logged in pieces, as Docker does at 16 KiB.
  while (s.pending.size() >= 16384) {
    log_record(log_fd, s, s.pending.substr(0, 16384));
    s.pending.erase(0, 16384);
  }
}

void map_ids(pid_t pid) {
  std::string text;
  if (!read_file(g_dir + "/idmap", text)) fail("read idmap", errno);
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "tool") {
      std::vector<std::string> args;
      std::string w;
      while (words >> w) args.push_back(w);
      if (args.empty()) fail("bad idmap line", EINVAL);
      args.insert(args.begin() + 1, std::to_string(pid));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(&a[0]);
      argv.push_back(nullptr);
      pid_t tool;
      int rc = posix_spawnp(&tool, argv[0], nullptr, nullptr, argv.data(), environ);
      if (rc != 0) fail("run " + args[0], rc);
      int status = 0;
      while (waitpid(tool, &status, 0) < 0 && errno == EINTR) {
      }
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fail(args[0] + " failed: check /etc/subuid and /etc/subgid", 0);
    } else if (kind == "write") {
      std::string file, content;
      words >> file;
      std::getline(words, content);
      if (!content.empty() && content[0] == ' ') content.erase(0, 1);
      std::string path = "/proc/" + std::to_string(pid) + "/" + file;
      int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0) fail("open " + path, errno);
      content += "\n";
      if (write(fd, content.data(), content.size()) < 0) fail("write " + path, errno);
      close(fd);
    }
  }
}

void write_exit(int code) {
  std::string tmp = g_dir + "/.exit.tmp";
  std::string body = std::to_string(code) + " " + now_rfc3339() + "\n";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  write_all(fd, body);
  fsync(fd);
  close(fd);
  rename(tmp.c_str(), (g_dir + "/exit").c_str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: tsrun-monitor CONTAINER_DIR\n");
    return 2;
  }
  g_dir = argv[1];
  signal(SIGPIPE, SIG_IGN);
  if (fcntl(kReadyFd, F_GETFD) < 0) {
    fprintf(stderr, "tsrun-monitor: fd 3 (ready pipe) is not open\n");
    return 2;
  }
  fcntl(kReadyFd, F_SETFD, FD_CLOEXEC);

  std::string plan_bytes;
  if (!read_file(g_dir + "/plan.bin", plan_bytes)) fail("read plan.bin", errno);
  tsrun::LaunchPlan plan;
  std::string err = tsrun::decode_plan(plan_bytes.data(), plan_bytes.size(), plan);
  if (!err.empty()) fail("bad plan: " + err, EINVAL);

  int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  if (!plan.tty) {
    if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) fail("pipe", errno);
    plan.stdio[1] = out_pipe[1];
    plan.stdio[2] = err_pipe[1];
    plan.stdin_null = true;
  }
  // The container dies with its monitor: a container nobody watches would be reported wrongly.
  plan.die_with_parent = true;

  int log_fd = open((g_dir + "/ctr.log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log_fd < 0) fail("open ctr.log", errno);

  tsrun::Launched launched;
  err = tsrun::launch(plan, launched);
  if (!err.empty()) fail(err, 0);
  map_ids(launched.pid);
  int pty = -1;
  tsrun::ChildError ce;
  if (!tsrun::resume(launched, plan.tty, pty, ce)) {
    int status;
    while (waitpid(launched.pid, &status, __WALL) < 0 && errno == EINTR) {
    }
    report_ready("err " + std::to_string(ce.kind) + " " + std::to_string(ce.err) + " " + ce.step + "\n");
    return 1;
  }
  if (out_pipe[1] >= 0) close(out_pipe[1]);
  if (err_pipe[1] >= 0) close(err_pipe[1]);
  report_ready("ok " + std::to_string(launched.pid) + "\n");

  std::vector<Stream> streams;
  if (plan.tty) {
    if (pty >= 0) streams.push_back({pty, "stdout", ""});
  } else {
    streams.push_back({out_pipe[0], "stdout", ""});
    streams.push_back({err_pipe[0], "stderr", ""});
  }
  bool exited = false;
  int code = 0;
  char buf[65536];
  while (true) {
    std::vector<pollfd> fds;
    for (auto& s : streams)
      if (s.fd >= 0) fds.push_back({s.fd, POLLIN, 0});
    if (!exited) fds.push_back({launched.pidfd, POLLIN, 0});
    if (fds.empty()) break;
    // Once the command has exited, give leftover writers (its descendants die with the pid
    // namespace) a bounded time to close the pipes.
    int r = poll(fds.data(), fds.size(), exited ? 2000 : -1);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) break;
    for (auto& p : fds) {
      if (!p.revents) continue;
      if (p.fd == launched.pidfd && !exited) {
        int status = 0;
        if (waitpid(launched.pid, &status, __WALL | WNOHANG) == launched.pid) {
          exited = true;
          code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        continue;
      }
      for (auto& s : streams) {
        if (s.fd != p.fd) continue;
        ssize_t n = read(s.fd, buf, sizeof buf);
        if (n > 0) {
          consume(log_fd, s, buf, static_cast<size_t>(n));
        } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
          // EOF, or EIO from a pty whose last slave closed.
          if (!s.pending.empty()) log_record(log_fd, s, s.pending);
          s.pending.clear();
          close(s.fd);
          s.fd = -1;
        }
      }
    }
  }
  for (auto& s : streams)
    if (!s.pending.empty()) log_record(log_fd, s, s.pending);
  if (!exited) {
    int status = 0;
    while (waitpid(launched.pid, &status, __WALL) < 0 && errno == EINTR) {
    }
    code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  close(log_fd);
  write_exit(code);
  // --rm: hand over to `tsrun rm` (files of subordinate owners need the user namespace, which
  // tsrun knows how to enter). The command line was written by tsrun, one argument a line.
  std::string autoremove;
  if (read_file(g_dir + "/autoremove", autoremove)) {
    std::vector<std::string> args;
    std::istringstream lines(autoremove);
    std::string line;
    while (std::getline(lines, line))
      if (!line.empty()) args.push_back(line);
    if (!args.empty()) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(&a[0]);
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
    }
  }
  return 0;
}
