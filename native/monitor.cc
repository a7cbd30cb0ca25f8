// tsrun-monitor: the parent of a detached container's init. It outlives the CLI that started
// it, holds the container's output pipes (or pty), writes the log as JSON lines like Docker's
// json-file driver, and records the exit status. It is a small C++ program, not Node, so that
// each detached container costs about what Podman's conmon costs.
//
// Usage: tsrun-monitor CONTAINER_DIR   (fd 3: the ready pipe to the CLI)
// CONTAINER_DIR holds:
//   plan.bin   the launch plan in the addon's wire format (written by tsrun)
//   prestart   what to do once the child exists, before it goes on: lines "tool PROGRAM ARGS..."
//              (the child's pid is inserted as the first argument: newuidmap, newgidmap, pasta),
//              "write FILE CONTENT" (written to /proc/PID/FILE), "cgroup DIR" (the pid is
//              written to DIR/cgroup.procs; DIR is removed at the end), or "netns VERB ARGS..." (a
//              request to the network holder on fd 4, the pid inserted after VERB)
//   pasta.pid, forward.pid  written by the network helpers (pasta, tsrun-forward); the monitor
//              stops them when the run ends
//   ctr.log    the log, appended: {"log":"...","stream":"stdout","time":"..."}
//   exit       written atomically when the container ends: "CODE FINISHED_AT\n"
//   restart    optional: "POLICY MAX" (no|always|unless-stopped|on-failure, MAX for on-failure)
//   stopped    written by `tsrun stop`/`kill`: no restart after this exit
//   pid        "PID" of the current run (rewritten on each restart)
//   restarts   how many times the container was restarted
//   health.bin optional: the launch plan of the health check (namespaces joined at run time)
//   health.conf "INTERVAL_MS TIMEOUT_MS START_PERIOD_MS RETRIES"
//   health.json the health state, as Docker's State.Health
//   autoremove optional: a command line (one argument a line) exec'd after the exit is recorded
//   attach.sock the attach socket (attach.h): live output out, input in
//   attach-wait optional: wait (up to 10 s) for a first attach client before starting, so that
//              `start -a` misses no output; the ready pipe then gets "attach\n" first
// The ready pipe gets "ok PID\n" once the command runs, or "err KIND ERRNO STEP\n".
// The plan's stdin: without stdin-null (run -i) the monitor holds a pipe to it (or, with a tty,
// the pty) and attached clients write to it.
// fd 4, when open: the connection to tsrun-netns (user-defined networks), kept while we live,
// so that the holder of the container's networks outlives every restart.
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
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "attach.h"
#include "netns.h"
#include "spawn.h"

extern char** environ;

namespace {

const int kReadyFd = 3;
const int kNetnsFd = 4;
std::string g_dir;
std::string g_cgroup;  // the container's cgroup, removed when the container ends

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

// The log file, rotated as Docker's json-file driver does with --log-opt max-size/max-file
// (src/container/output-log.ts rotates a foreground run's log the same way).
struct LogFile {
  int fd = -1;
  long long size = 0;
  long long max_size = 0;  // 0: never rotated
  int max_file = 1;
  std::string path;        // empty: --log-driver none (fd is /dev/null)
  std::string attrs;       // --log-opt labels/env: ,"attrs":{...} as the CLI rendered it, or empty
};

bool open_log(LogFile& log) {
  log.fd = open(log.path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (log.fd < 0) return false;
  struct stat st;
  log.size = fstat(log.fd, &st) == 0 ? st.st_size : 0;
  return true;
}

// ctr.log -> ctr.log.1 -> ... -> ctr.log.(max_file-1), the oldest dropped; max_file 1 empties it.
void rotate_log(LogFile& log) {
  close(log.fd);
  if (log.max_file < 2) {
    unlink(log.path.c_str());
  } else {
    unlink((log.path + "." + std::to_string(log.max_file - 1)).c_str());
    for (int n = log.max_file - 2; n >= 1; n--)
      rename((log.path + "." + std::to_string(n)).c_str(), (log.path + "." + std::to_string(n + 1)).c_str());
    rename(log.path.c_str(), (log.path + ".1").c_str());
  }
  // The container runs on: a log that cannot be reopened (a full disk...) is lost, not the monitor.
  if (!open_log(log)) log.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
}

void log_record(LogFile& log, const Stream& s, const std::string& text) {
  std::string record = "{\"log\":\"" + json_escape(text) + "\",\"stream\":\"" + s.name + "\"" + log.attrs + ",\"time\":\"" + now_rfc3339() + "\"}\n";
  if (log.max_size > 0 && log.size > 0 && log.size + static_cast<long long>(record.size()) > log.max_size) rotate_log(log);
  write_all(log.fd, record);
  log.size += static_cast<long long>(record.size());
}

void consume(LogFile& log_fd, Stream& s, const char* data, size_t n) {
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
  if (!read_file(g_dir + "/prestart", text)) fail("read prestart", errno);
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
      int errp[2];
      if (pipe2(errp, O_CLOEXEC) != 0) fail("pipe", errno);
      pid_t tool;
      int rc = tsrun::spawn_tool(tool, argv.data(), errp[1]);
      close(errp[1]);
      if (rc != 0) fail("run " + args[0], rc);
      int status = 0;
      while (waitpid(tool, &status, 0) < 0 && errno == EINTR) {
      }
      // What the tool said, without waiting for a daemonized child that may hold the pipe.
      fcntl(errp[0], F_SETFL, O_NONBLOCK);
      std::string said;
      char b[1024];
      ssize_t n;
      while ((n = read(errp[0], b, sizeof b)) > 0) said.append(b, static_cast<size_t>(n));
      close(errp[0]);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        std::string last;
        std::istringstream ls(said);
        std::string l;
        while (std::getline(ls, l))
          if (!l.empty() && l.find("syslog") == std::string::npos) last = l;
        std::string program = args[0].substr(args[0].rfind('/') + 1);
        fail(program + ": " + (last.empty() ? "exit " + std::to_string(WEXITSTATUS(status)) : last), 0);
      }
    } else if (kind == "cgroup") {
      // The container's own cgroup (resource limits): the child enters it before it runs.
      std::getline(words, g_cgroup);
      if (!g_cgroup.empty() && g_cgroup[0] == ' ') g_cgroup.erase(0, 1);
      std::string procs = g_cgroup + "/cgroup.procs", pid_text = std::to_string(pid) + "\n";
      int fd = open(procs.c_str(), O_WRONLY | O_CLOEXEC);
      if (fd < 0 || write(fd, pid_text.data(), pid_text.size()) < 0) fail("move the container into " + g_cgroup, errno);
      close(fd);
    } else if (kind == "netns") {
      std::string verb, rest;
      words >> verb;
      std::getline(words, rest);
      std::string reply = tsrun::netns_request(kNetnsFd, verb + " " + std::to_string(pid) + rest);
      if (reply.compare(0, 2, "ok") != 0) fail("connect the network: " + (reply.size() > 4 ? reply.substr(4) : reply), 0);
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

long long now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void write_atomic(const std::string& name, const std::string& body) {
  std::string tmp = g_dir + "/." + name + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  write_all(fd, body);
  close(fd);
  rename(tmp.c_str(), (g_dir + "/" + name).c_str());
}

bool file_exists(const std::string& name) {
  struct stat st;
  return stat((g_dir + "/" + name).c_str(), &st) == 0;
}

// Health checks, as Docker runs them: every interval, a command inside the container's
// namespaces with a timeout; `retries` consecutive failures make it unhealthy. Failures during
// the start period do not count.
struct Health {
  bool enabled = false;
  tsrun::LaunchPlan plan;
  long long interval = 30000, timeout = 30000, start_period = 0;
  int retries = 3;
  long long started = 0, next_due = 0, deadline = 0;
  bool passed_once = false;  // a success ends the start period early (Docker's rule)
  pid_t pid = -1;
  int pidfd = -1, out = -1;
  std::string output, started_at;
  std::string status = "starting";
  int failing = 0;
  std::vector<std::string> log;  // JSON objects, the last five

  void save() {
    std::string body = "{\"Status\":\"" + status + "\",\"FailingStreak\":" + std::to_string(failing) + ",\"Log\":[";
    for (size_t i = 0; i < log.size(); i++) body += (i ? "," : "") + log[i];
    body += "]}\n";
    write_atomic("health.json", body);
  }

  void start_check(pid_t container) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) return;
    tsrun::LaunchPlan hp = plan;
    hp.join_ns.clear();
    for (const char* ns : {"user", "mnt", "pid", "uts", "ipc", "net", "cgroup"})
      hp.join_ns.push_back("/proc/" + std::to_string(container) + "/ns/" + ns);
    hp.stdio[1] = p[1];
    hp.stdio[2] = p[1];
    hp.stdin_null = true;
    hp.die_with_parent = true;
    tsrun::Launched l;
    started_at = now_rfc3339();
    deadline = now_ms() + timeout;
    output.clear();
    if (!tsrun::launch(hp, l).empty()) {
      close(p[0]);
      close(p[1]);
      finish(-1, "cannot start the health check");
      return;
    }
    close(p[1]);
    int pty = -1;
    tsrun::ChildError ce;
    pid_t cmd = -1;
    bool ok = tsrun::resume(l, false, pty, ce, &cmd);
    int st;
    while (waitpid(l.pid, &st, __WALL) < 0 && errno == EINTR) {
    }
    close(l.pidfd);
    if (!ok) {
      close(p[0]);
      if (cmd > 0 && cmd != l.pid) while (waitpid(cmd, &st, __WALL) < 0 && errno == EINTR) {
      }
      finish(ce.kind == 1 ? 127 : 126, ce.step);
      return;
    }
    pid = cmd;
    pidfd = static_cast<int>(syscall(SYS_pidfd_open, cmd, 0));
    out = p[0];
  }

  void finish(int code, const std::string& extra) {
    if (!extra.empty()) output += extra;
    if (output.size() > 4096) output.resize(4096);
    std::string entry = "{\"Start\":\"" + started_at + "\",\"End\":\"" + now_rfc3339() + "\",\"ExitCode\":" +
                        std::to_string(code) + ",\"Output\":\"" + json_escape(output) + "\"}";
    log.push_back(entry);
    if (log.size() > 5) log.erase(log.begin());
    bool in_start_period = !passed_once && now_ms() - started < start_period;
    if (code == 0) {
      passed_once = true;
      failing = 0;
      status = "healthy";
    } else if (!in_start_period) {
      failing++;
      if (failing >= retries) status = "unhealthy";
    }
    save();
    if (pidfd >= 0) close(pidfd);
    if (out >= 0) close(out);
    pid = -1;
    pidfd = out = -1;
    next_due = now_ms() + interval;
  }

  // Called when the check's pidfd is readable or its deadline passed.
  void reap(bool timed_out) {
    if (pid <= 0) return;
    if (timed_out) kill(pid, SIGKILL);
    int st = 0;
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
    }
    if (out >= 0) {
      char b[4096];
      ssize_t n;
      while ((n = read(out, b, sizeof b)) > 0 && output.size() < 8192) output.append(b, static_cast<size_t>(n));
    }
    int code = timed_out ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    finish(code, timed_out ? "Health check exceeded timeout" : "");
  }
};

// An exited process whose parent has not collected it yet still answers kill(pid, 0).
bool is_zombie(pid_t pid) {
  std::string stat;
  if (!read_file("/proc/" + std::to_string(pid) + "/stat", stat)) return true;
  size_t close_paren = stat.rfind(')');
  return close_paren == std::string::npos || close_paren + 2 >= stat.size() || stat[close_paren + 2] == 'Z';
}

// pasta does not notice that the namespace it serves is gone: stop it (and the port
// forwarder) with the run.
void stop_network_helper() {
  for (const char* file : {"/pasta.pid", "/forward.pid"}) {
    std::string text;
    if (!read_file(g_dir + file, text)) continue;
    pid_t pid = static_cast<pid_t>(atoi(text.c_str()));
    if (pid > 1 && kill(pid, SIGTERM) == 0) {
      // Wait (bounded) until it is gone, so its ports are free once the container counts as
      // stopped. It is not our child: poll.
      for (int i = 0; i < 200 && kill(pid, 0) == 0 && !is_zombie(pid); i++) {
        struct timespec ts = {0, 5 * 1000000};
        nanosleep(&ts, nullptr);
      }
    }
    unlink((g_dir + file).c_str());
  }
}

bool load_health(Health& h) {
  std::string bytes, conf;
  if (!read_file(g_dir + "/health.bin", bytes) || !read_file(g_dir + "/health.conf", conf)) return false;
  if (!tsrun::decode_plan(bytes.data(), bytes.size(), h.plan).empty()) return false;
  std::istringstream in(conf);
  in >> h.interval >> h.timeout >> h.start_period >> h.retries;
  if (h.interval <= 0) h.interval = 30000;
  if (h.timeout <= 0) h.timeout = 30000;
  if (h.retries <= 0) h.retries = 3;
  h.enabled = true;
  return true;
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
  fcntl(kNetnsFd, F_SETFD, FD_CLOEXEC);  // not open unless the container is on a user network

  std::string plan_bytes;
  if (!read_file(g_dir + "/plan.bin", plan_bytes)) fail("read plan.bin", errno);
  tsrun::LaunchPlan base_plan;
  std::string err = tsrun::decode_plan(plan_bytes.data(), plan_bytes.size(), base_plan);
  if (!err.empty()) fail("bad plan: " + err, EINVAL);
  std::string policy = "no";
  int max_restarts = 0;
  // Read again at each exit: `tsrun update --restart` rewrites the file of a running container.
  auto read_policy = [&]() {
    std::string text;
    if (read_file(g_dir + "/restart", text)) {
      std::istringstream in(text);
      std::string name;
      int count = 0;
      if (in >> name >> count) {
        policy = name;
        max_restarts = count;
      }
    }
  };
  read_policy();
  Health health;
  load_health(health);

  // --log-driver none: the output is still read (for attach clients), kept nowhere.
  LogFile log_fd;
  if (file_exists("log-none")) {
    log_fd.fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (log_fd.fd < 0) fail("open /dev/null", errno);
  } else {
    log_fd.path = g_dir + "/ctr.log";
    std::string text;
    if (read_file(g_dir + "/log-rotate", text)) {
      std::istringstream in(text);
      in >> log_fd.max_size >> log_fd.max_file;
    }
    read_file(g_dir + "/log-attrs", log_fd.attrs);
    if (!open_log(log_fd)) fail("open ctr.log", errno);
  }
  tsrun::AttachServer attach;
  err = attach.listen_in(g_dir);
  if (!err.empty()) fail(err, 0);
  if (file_exists("attach-wait")) {
    write_all(kReadyFd, "attach\n");
    attach.wait_for_client(10000);
    unlink((g_dir + "/attach-wait").c_str());
  }
  // Input for the container is wanted with run -i: the plan then has no stdin-null.
  const bool want_stdin = !base_plan.stdin_null;

  bool first = true;
  int restarts = 0;
  long long backoff = 100;
  int code = 0;
  char buf[65536];
  for (;;) {
    tsrun::LaunchPlan plan = base_plan;
    int out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1}, in_pipe[2] = {-1, -1};
    if (!plan.tty) {
      if (pipe2(out_pipe, O_CLOEXEC) != 0 || pipe2(err_pipe, O_CLOEXEC) != 0) fail("pipe", errno);
      plan.stdio[1] = out_pipe[1];
      plan.stdio[2] = err_pipe[1];
      if (want_stdin) {
        if (pipe2(in_pipe, O_CLOEXEC) != 0) fail("pipe", errno);
        plan.stdio[0] = in_pipe[0];
      }
      plan.stdin_null = !want_stdin;
    }
    // The container dies with its monitor: a container nobody watches would be reported wrongly.
    plan.die_with_parent = true;
    tsrun::Launched launched;
    err = tsrun::launch(plan, launched);
    if (!err.empty()) {
      if (first) fail(err, 0);
      code = 125;
      break;
    }
    map_ids(launched.pid);
    int pty = -1;
    tsrun::ChildError ce;
    if (!tsrun::resume(launched, plan.tty, pty, ce)) {
      int status;
      while (waitpid(launched.pid, &status, __WALL) < 0 && errno == EINTR) {
      }
      stop_network_helper();
      if (first) {
        report_ready("err " + std::to_string(ce.kind) + " " + std::to_string(ce.err) + " " + ce.step + "\n");
        return 1;
      }
      code = ce.kind == 1 ? 127 : ce.kind == 2 ? 126 : 125;
      break;
    }
    if (out_pipe[1] >= 0) close(out_pipe[1]);
    if (err_pipe[1] >= 0) close(err_pipe[1]);
    if (in_pipe[0] >= 0) close(in_pipe[0]);
    // The attach server owns the stdin pipe's write end from here on.
    attach.set_target(!want_stdin ? -1 : plan.tty ? pty : in_pipe[1], plan.tty ? pty : -1, !plan.tty && want_stdin);
    write_atomic("pid", std::to_string(launched.pid) + "\n");
    if (first) report_ready("ok " + std::to_string(launched.pid) + "\n");
    first = false;
    long long run_started = now_ms();
    if (health.enabled) {
      health.started = run_started;
      health.next_due = run_started + health.interval;
      health.status = "starting";
      health.failing = 0;
      health.save();
    }

    std::vector<Stream> streams;
    if (plan.tty) {
      if (pty >= 0) streams.push_back({pty, "stdout", ""});
    } else {
      streams.push_back({out_pipe[0], "stdout", ""});
      streams.push_back({err_pipe[0], "stderr", ""});
    }
    bool exited = false;
    long long drain_until = 0;
    while (true) {
      std::vector<pollfd> fds;
      for (auto& st : streams)
        if (st.fd >= 0) fds.push_back({st.fd, POLLIN, 0});
      if (!exited) fds.push_back({launched.pidfd, POLLIN, 0});
      bool checking = health.enabled && health.pid > 0 && health.pidfd >= 0;
      if (checking && !exited) fds.push_back({health.pidfd, POLLIN, 0});
      if (fds.empty()) break;
      attach.add_poll_fds(fds);
      long long now = now_ms();
      long long wait = -1;
      if (exited) {
        // Once the command has exited, give leftover writers (its descendants die with the
        // pid namespace) a bounded time to close the pipes.
        wait = drain_until > now ? drain_until - now : 0;
      } else if (health.enabled) {
        long long due = checking ? health.deadline : health.next_due;
        wait = due > now ? due - now : 0;
      }
      int r = poll(fds.data(), fds.size(), static_cast<int>(wait));
      if (r < 0 && errno == EINTR) continue;
      now = now_ms();
      if (r == 0) {
        if (exited) break;
        if (health.enabled) {
          if (checking && now >= health.deadline) health.reap(true);
          else if (!checking && now >= health.next_due) health.start_check(launched.pid);
        }
        continue;
      }
      for (auto& p : fds) {
        if (!p.revents) continue;
        if (attach.handle(p)) continue;
        if (p.fd == launched.pidfd && !exited) {
          int status = 0;
          if (waitpid(launched.pid, &status, __WALL | WNOHANG) == launched.pid) {
            exited = true;
            drain_until = now_ms() + 2000;
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
          }
          continue;
        }
        if (checking && p.fd == health.pidfd) {
          health.reap(false);
          continue;
        }
        for (auto& st : streams) {
          if (st.fd != p.fd) continue;
          ssize_t n = read(st.fd, buf, sizeof buf);
          if (n > 0) {
            consume(log_fd, st, buf, static_cast<size_t>(n));
            attach.broadcast(strcmp(st.name, "stderr") == 0 ? 2 : 1, buf, static_cast<size_t>(n));
          } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
            // EOF, or EIO from a pty whose last slave closed.
            if (!st.pending.empty()) log_record(log_fd, st, st.pending);
            st.pending.clear();
            close(st.fd);
            st.fd = -1;
          }
        }
      }
    }
    attach.close_clients();
    for (auto& st : streams) {
      if (!st.pending.empty()) log_record(log_fd, st, st.pending);
      if (st.fd >= 0) close(st.fd);
    }
    if (health.pid > 0) health.reap(true);
    if (!exited) {
      int status = 0;
      while (waitpid(launched.pid, &status, __WALL) < 0 && errno == EINTR) {
      }
      code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    close(launched.pidfd);
    stop_network_helper();

    // Restart policy, as Docker applies it: never after `tsrun stop`/`kill`.
    bool again = false;
    read_policy();
    if (!file_exists("stopped")) {
      if (policy == "always" || policy == "unless-stopped") again = true;
      if (policy == "on-failure" && code != 0 && (max_restarts <= 0 || restarts < max_restarts)) again = true;
    }
    if (!again) break;
    restarts++;
    // last-exit first: whoever sees the new count (an attached `run` ending with this exit)
    // finds this exit's code beside it.
    write_atomic("last-exit", std::to_string(code) + " " + now_rfc3339() + "\n");
    write_atomic("restarts", std::to_string(restarts) + "\n");
    // Docker's backoff: doubling from 100 ms, back to 100 ms after a run of 10 s or more.
    if (now_ms() - run_started >= 10000) backoff = 100;
    struct timespec ts = {static_cast<time_t>(backoff / 1000), static_cast<long>((backoff % 1000) * 1000000)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    backoff = backoff * 2 > 60000 ? 60000 : backoff * 2;
    if (file_exists("stopped")) break;
  }
  close(log_fd.fd);
  unlink((g_dir + "/attach.sock").c_str());
  if (!g_cgroup.empty()) rmdir(g_cgroup.c_str());
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
      std::vector<char*> argv2;
      for (auto& a : args) argv2.push_back(&a[0]);
      argv2.push_back(nullptr);
      execv(argv2[0], argv2.data());
    }
  }
  return 0;
}
