// tsrun-forward: publishes a container's ports (-p) on the host, and optionally runs
// slirp4netns for its outbound access when pasta is not installed.
//
// Usage: tsrun-forward PID --pid-file FILE [--slirp4netns PATH] [-t SPEC]... [-u SPEC]...
//   SPEC: [HOST_IP/]HOST_PORT:CONTAINER_PORT (TCP with -t, UDP with -u)
//
// It binds every host port first, in the host's network namespace, so a taken port fails the
// start with one line on stderr (exit 1). Then it joins the container's user namespace and
// network namespace (setns: user first, which gives it the capabilities to join the other):
// sockets opened from then on live in the container's namespace, while the listeners it
// already holds stay on the host. Each accepted connection gets a socket connected to
// 127.0.0.1:CONTAINER_PORT inside the container, and data moves between the two with
// splice(2) through a pipe, without passing through user space. UDP datagrams are relayed per
// client address, each client with its own socket in the container. No process is forked per
// connection. The forwarder forks into the background once set up (its pid goes to FILE) and
// exits when the container's init does (a pidfd) or on SIGTERM.
//
// The server in the container sees connections from 127.0.0.1 (the source address of the
// host's client is not preserved). The forwarder is not dumpable and lives outside the
// container's pid namespace, so nothing in the container can reach it.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "spawn.h"

namespace {

// Pipes start at the kernel's default size and grow to this once a transfer fills them: short
// connections pay no extra syscalls, bulk ones move up to 1 MiB per splice (the unprivileged
// maximum, /proc/sys/fs/pipe-max-size).
const size_t kPipeSize = 1 << 20;
// During a bulk transfer each source socket gets a receive low-water mark, so that it wakes us
// once this much has arrived rather than for every segment: fewer, larger splices (measured
// about 5-10 % more throughput). A direction that read nothing for a tick gets the mark back to
// one byte, so a pause never leaves bytes waiting for long.
const int kLowWater = 1 << 16;
const int kTickMs = 10;
const long long kUdpIdleMs = 180000;  // as Docker's userland proxy keeps UDP flows

struct Mapping {
  bool udp = false;
  std::string host_ip;  // empty: all IPv4 addresses
  int host_port = 0, container_port = 0;
  int fd = -1;
};

// What an epoll event belongs to.
struct Tag {
  enum Kind { Listener, Host, Container, UdpFlow, Pidfd } kind;
  void* object;
};

// One direction of a connection: bytes read from one socket wait in the pipe for the other.
struct Direction {
  int pipe[2] = {-1, -1};
  size_t in_pipe = 0;
  size_t capacity = 0;
  bool grown = false;  // tried to grow it (the user's pipe quota may refuse)
  bool low_water = false;  // the source has the bulk low-water mark
  bool read_this_tick = false;
  bool src_eof = false;
  bool dst_shut = false;
};

struct Conn {
  int host = -1, ctr = -1;
  Direction to_ctr, to_host;
  bool connecting = true;
  bool pump_both = false;  // just connected, or a low-water mark was lifted: both may wait
  bool in_bulk = false;    // listed in g_bulk
  bool dead = false;       // closed; freed after the current batch of events
  Tag host_tag{Tag::Host, nullptr}, ctr_tag{Tag::Container, nullptr};
};

struct Flow {
  Mapping* mapping;
  sockaddr_storage client;
  socklen_t client_len;
  int ctr;
  long long last;
  Tag tag{Tag::UdpFlow, nullptr};
};

int g_epoll = -1;
std::map<std::string, Flow*> g_flows;
std::vector<Conn*> g_closed;
std::vector<Conn*> g_bulk;  // connections with a low-water mark set, looked at every tick
// Empty pipes of finished connections, kept for the next ones (fewer syscalls per connection).
std::vector<Direction> g_pipe_pool;
const size_t kPipePoolSize = 64;

bool take_pipe(Direction& d) {
  if (!g_pipe_pool.empty()) {
    d = g_pipe_pool.back();
    g_pipe_pool.pop_back();
    return true;
  }
  if (pipe2(d.pipe, O_NONBLOCK | O_CLOEXEC) != 0) return false;
  d.capacity = static_cast<size_t>(fcntl(d.pipe[1], F_GETPIPE_SZ));
  return true;
}

void give_back_pipe(Direction& d) {
  if (d.pipe[0] < 0) return;
  if (d.in_pipe == 0 && g_pipe_pool.size() < kPipePoolSize) {
    Direction fresh;
    fresh.pipe[0] = d.pipe[0];
    fresh.pipe[1] = d.pipe[1];
    fresh.capacity = d.capacity;
    fresh.grown = d.grown;
    g_pipe_pool.push_back(fresh);
  } else {
    close(d.pipe[0]);
    close(d.pipe[1]);
  }
  d.pipe[0] = d.pipe[1] = -1;
}

long long now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

[[noreturn]] void die(const std::string& message) {
  fprintf(stderr, "%s\n", message.c_str());
  exit(1);
}

bool parse_spec(const char* text, bool udp, Mapping& m) {
  std::string s = text;
  m.udp = udp;
  size_t slash = s.rfind('/');
  if (slash != std::string::npos) {
    m.host_ip = s.substr(0, slash);
    s = s.substr(slash + 1);
  }
  if (sscanf(s.c_str(), "%d:%d", &m.host_port, &m.container_port) != 2) return false;
  return m.host_port > 0 && m.host_port < 65536 && m.container_port > 0 && m.container_port < 65536;
}

std::string describe(const Mapping& m) {
  std::string ip = m.host_ip.empty() ? "0.0.0.0" : m.host_ip;
  if (ip.find(':') != std::string::npos) ip = "[" + ip + "]";
  return ip + ":" + std::to_string(m.host_port) + "/" + (m.udp ? "udp" : "tcp");
}

void bind_host(Mapping& m) {
  bool v6 = m.host_ip.find(':') != std::string::npos;
  sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(static_cast<uint16_t>(m.host_port));
    if (inet_pton(AF_INET6, m.host_ip.c_str(), &a->sin6_addr) != 1) die("invalid host address " + m.host_ip);
    len = sizeof *a;
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(static_cast<uint16_t>(m.host_port));
    if (m.host_ip.empty()) a->sin_addr.s_addr = htonl(INADDR_ANY);
    else if (inet_pton(AF_INET, m.host_ip.c_str(), &a->sin_addr) != 1) die("invalid host address " + m.host_ip);
    len = sizeof *a;
  }
  m.fd = socket(v6 ? AF_INET6 : AF_INET, (m.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (m.fd < 0) die(std::string("socket: ") + strerror(errno));
  int one = 1;
  if (!m.udp) setsockopt(m.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (v6) setsockopt(m.fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(m.fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno == EADDRINUSE) die("cannot publish port " + describe(m) + ": the host port is already in use");
    if (errno == EADDRNOTAVAIL) die("cannot publish port " + describe(m) + ": the host has no address " + m.host_ip);
    if (errno == EACCES) die("cannot publish port " + describe(m) + ": ports below 1024 need root (or a lower net.ipv4.ip_unprivileged_port_start)");
    die("cannot publish port " + describe(m) + ": " + strerror(errno));
  }
  if (!m.udp && listen(m.fd, 4096) != 0) die("listen on " + describe(m) + ": " + strerror(errno));
}

void watch(int fd, uint32_t events, Tag* tag) {
  epoll_event ev;
  ev.events = events;
  ev.data.ptr = tag;
  epoll_ctl(g_epoll, EPOLL_CTL_ADD, fd, &ev);
}

// A socket in the container's namespace (the process has joined it), connecting to port on
// its loopback.
int container_socket(int type, int port) {
  int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    close(fd);
    return -1;
  }
  return fd;
}

void close_conn(Conn* c, bool reset) {
  for (int fd : {c->host, c->ctr}) {
    if (fd < 0) continue;
    if (reset) {
      // The peer of a failed side learns it as a reset, as it would without the forwarder.
      linger l = {1, 0};
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(fd);
  }
  give_back_pipe(c->to_ctr);
  give_back_pipe(c->to_host);
  // Events for its other socket may follow in this batch: free it afterwards.
  c->dead = true;
  g_closed.push_back(c);
}

void set_low_water(int fd, int bytes) { setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes); }

// Moves what it can from src through the pipe to dst. Returns false on a connection error.
bool pump(Conn* c, int src, int dst, Direction& d) {
  for (;;) {
    bool moved = false, small_read = false;
    if (d.in_pipe == d.capacity && !d.grown) {
      d.grown = true;
      int size = fcntl(d.pipe[1], F_SETPIPE_SZ, static_cast<int>(kPipeSize));
      if (size > 0) d.capacity = static_cast<size_t>(size);
    }
    if (!d.src_eof && d.in_pipe < d.capacity) {
      ssize_t n = splice(src, nullptr, d.pipe[1], nullptr, d.capacity - d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.in_pipe += static_cast<size_t>(n);
        moved = true;
        d.read_this_tick = true;
        small_read = n < kLowWater / 4;
        if (!d.low_water && n >= kLowWater) {
          set_low_water(src, kLowWater);
          d.low_water = true;
          if (!c->in_bulk) {
            c->in_bulk = true;
            g_bulk.push_back(c);
          }
        }
      } else if (n == 0) {
        d.src_eof = true;
        moved = true;
      } else if (errno != EAGAIN && errno != EINTR) {
        return false;
      }
    }
    if (d.in_pipe > 0) {
      ssize_t n = splice(d.pipe[0], nullptr, dst, nullptr, d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d.in_pipe -= static_cast<size_t>(n);
        moved = true;
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        return false;
      }
    }
    if (!moved) break;
    // Under the mark, a trickle waits for the next wake-up instead of a splice per segment.
    if (d.low_water && small_read && d.in_pipe == 0) break;
  }
  if (d.src_eof && d.in_pipe == 0 && !d.dst_shut) {
    shutdown(dst, SHUT_WR);
    d.dst_shut = true;
  }
  return true;
}

// Work for one socket's events: data in (this side's direction), room out (the other's).
void serve(Conn* c, bool host_side, uint32_t events) {
  if (c->dead) return;
  if (c->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->ctr, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == EINPROGRESS || err == EALREADY) return;
    if (err != 0) {
      close_conn(c, true);  // nothing listens in the container
      return;
    }
    // Connected once the socket is writable with no error.
    pollfd p = {c->ctr, POLLOUT, 0};
    if (poll(&p, 1, 0) != 1) return;
    c->connecting = false;
    c->pump_both = true;
  }
  // Readable (or end of file) on a side feeds its direction; writable drains the other one.
  bool in = events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR), out = events & EPOLLOUT;
  bool to_ctr = (host_side ? in : out) || c->pump_both;
  bool to_host = (host_side ? out : in) || c->pump_both;
  c->pump_both = false;
  if ((to_ctr && !pump(c, c->host, c->ctr, c->to_ctr)) || (to_host && !pump(c, c->ctr, c->host, c->to_host))) {
    close_conn(c, true);
    return;
  }
  if (c->to_ctr.dst_shut && c->to_host.dst_shut) close_conn(c, false);
}

// Every tick: a direction that read nothing since the last one gets its low-water mark lifted
// (what is left under the mark is moved at once).
void tick() {
  std::vector<Conn*> list;
  list.swap(g_bulk);
  for (Conn* c : list) {
    c->in_bulk = false;
    if (c->dead) continue;
    bool lifted = false;
    for (auto [d, src] : {std::pair<Direction*, int>{&c->to_ctr, c->host}, std::pair<Direction*, int>{&c->to_host, c->ctr}}) {
      if (d->low_water && !d->read_this_tick) {
        set_low_water(src, 1);
        d->low_water = false;
        lifted = true;
      }
      d->read_this_tick = false;
    }
    if (lifted) {
      c->pump_both = true;
      serve(c, true, 0);
    }
    if (!c->dead && !c->in_bulk && (c->to_ctr.low_water || c->to_host.low_water)) {
      c->in_bulk = true;
      g_bulk.push_back(c);
    }
  }
}

void accept_tcp(Mapping* m) {
  for (;;) {
    int host = accept4(m->fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (host < 0) return;  // EAGAIN, or an aborted connection
    Conn* c = new Conn;
    c->host = host;
    c->ctr = container_socket(SOCK_STREAM, m->container_port);
    if (c->ctr < 0 || !take_pipe(c->to_ctr) || !take_pipe(c->to_host)) {
      close_conn(c, true);
      continue;
    }
    int one = 1;
    setsockopt(host, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(c->ctr, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->host_tag.object = c;
    c->ctr_tag.object = c;
    watch(host, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->host_tag);
    watch(c->ctr, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, &c->ctr_tag);
  }
}

std::string flow_key(const Mapping* m, const sockaddr_storage& a, socklen_t len) {
  return std::to_string(reinterpret_cast<uintptr_t>(m)) + ":" + std::string(reinterpret_cast<const char*>(&a), len);
}

void close_flow(Flow* f) {
  g_flows.erase(flow_key(f->mapping, f->client, f->client_len));
  close(f->ctr);
  delete f;
}

void relay_udp_in(Mapping* m) {
  static char buf[65536];
  for (;;) {
    sockaddr_storage from;
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(m->fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return;
    std::string key = flow_key(m, from, len);
    auto it = g_flows.find(key);
    Flow* f;
    if (it == g_flows.end()) {
      int ctr = container_socket(SOCK_DGRAM, m->container_port);
      if (ctr < 0) continue;
      f = new Flow{m, from, len, ctr, 0};
      f->tag.object = f;
      g_flows[key] = f;
      watch(ctr, EPOLLIN, &f->tag);
    } else {
      f = it->second;
    }
    f->last = now_ms();
    send(f->ctr, buf, static_cast<size_t>(n), 0);
  }
}

void relay_udp_out(Flow* f) {
  static char buf[65536];
  for (;;) {
    ssize_t n = recv(f->ctr, buf, sizeof buf, 0);
    if (n < 0) return;
    f->last = now_ms();
    sendto(f->mapping->fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&f->client), f->client_len);
  }
}

// slirp4netns for the container's outbound access: a child that exits when we do (its exit
// fd is a pipe we hold), configured once it writes to its ready fd.
void start_slirp(const std::string& path, const std::string& pid, const std::string& ifname, int& exit_write) {
  int ready[2], exit_pipe[2];
  if (pipe(ready) != 0 || pipe(exit_pipe) != 0) die(std::string("pipe: ") + strerror(errno));
  fcntl(ready[0], F_SETFD, FD_CLOEXEC);
  fcntl(exit_pipe[1], F_SETFD, FD_CLOEXEC);
  std::vector<std::string> args = {path,
                                   "--configure",
                                   "--mtu=65520",
                                   "--ready-fd=" + std::to_string(ready[1]),
                                   "--exit-fd=" + std::to_string(exit_pipe[0]),
                                   "--userns-path=/proc/" + pid + "/ns/user",
                                   pid,
                                   ifname};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  // Its stderr must not be the pipe tsrun reads ours from: tsrun closes it once we exit, and
  // a later message would kill slirp4netns with SIGPIPE.
  int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
  pid_t child;
  int rc = tsrun::spawn_tool(child, argv.data(), devnull);
  if (devnull >= 0) close(devnull);
  close(ready[1]);
  close(exit_pipe[0]);
  if (rc != 0) die("run " + path + ": " + strerror(rc));
  char byte;
  pollfd p = {ready[0], POLLIN, 0};
  if (poll(&p, 1, 10000) != 1 || read(ready[0], &byte, 1) != 1) {
    int status = 0;
    waitpid(child, &status, WNOHANG);
    die("slirp4netns failed to configure the container's network");
  }
  close(ready[0]);
  exit_write = exit_pipe[1];
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: tsrun-forward PID --pid-file FILE [--slirp4netns PATH [--ifname NAME]] [-t SPEC]... [-u SPEC]...\n");
    return 2;
  }
  std::string pid = argv[1], pid_file, slirp, ifname = "tap0";
  std::vector<Mapping> maps;
  for (int i = 2; i < argc; i++) {
    std::string a = argv[i];
    if (i + 1 >= argc) die("tsrun-forward: " + a + " needs a value");
    const char* v = argv[++i];
    if (a == "--pid-file") {
      pid_file = v;
    } else if (a == "--slirp4netns") {
      slirp = v;
    } else if (a == "--ifname") {
      ifname = v;
    } else if (a == "-t" || a == "-u") {
      Mapping m;
      if (!parse_spec(v, a == "-u", m)) die(std::string("tsrun-forward: bad port spec ") + v);
      maps.push_back(m);
    } else {
      die("tsrun-forward: unknown option " + a);
    }
  }
  if (pid_file.empty()) die("tsrun-forward: --pid-file is required");
  // Our own session (and slirp4netns's): a Ctrl-C meant for a foreground run's container must
  // not reach its network helpers.
  setsid();
  signal(SIGPIPE, SIG_IGN);
  rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  for (auto& m : maps) bind_host(m);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, atoi(pid.c_str()), 0));
  if (pidfd < 0) die("the container's process is gone: " + std::string(strerror(errno)));
  int slirp_exit = -1;
  if (!slirp.empty()) start_slirp(slirp, pid, ifname, slirp_exit);

  // Nothing in the container may ptrace us or open our /proc files (we hold host sockets).
  prctl(PR_SET_DUMPABLE, 0);
  std::string ns = "/proc/" + pid + "/ns/";
  int userns = open((ns + "user").c_str(), O_RDONLY | O_CLOEXEC);
  int netns = open((ns + "net").c_str(), O_RDONLY | O_CLOEXEC);
  if (userns < 0 || netns < 0) die("open the container's namespaces: " + std::string(strerror(errno)));
  if (setns(userns, CLONE_NEWUSER) != 0) die("join the container's user namespace: " + std::string(strerror(errno)));
  if (setns(netns, CLONE_NEWNET) != 0) die("join the container's network namespace: " + std::string(strerror(errno)));
  close(userns);
  close(netns);

  pid_t child = fork();
  if (child < 0) die(std::string("fork: ") + strerror(errno));
  if (child > 0) {
    std::string tmp = pid_file + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    if (!f || fprintf(f, "%d\n", child) < 0 || fclose(f) != 0 || rename(tmp.c_str(), pid_file.c_str()) != 0) {
      kill(child, SIGKILL);
      die("write " + pid_file + ": " + strerror(errno));
    }
    _exit(0);
  }
  tsrun::stdio_to_devnull();

  g_epoll = epoll_create1(EPOLL_CLOEXEC);
  Tag pid_tag{Tag::Pidfd, nullptr};
  watch(pidfd, EPOLLIN, &pid_tag);
  std::vector<Tag> listener_tags(maps.size());
  for (size_t i = 0; i < maps.size(); i++) {
    listener_tags[i] = Tag{Tag::Listener, &maps[i]};
    watch(maps[i].fd, EPOLLIN, &listener_tags[i]);
  }
  epoll_event events[256];
  long long next_sweep = now_ms() + kUdpIdleMs / 4, next_tick = 0;
  for (;;) {
    int timeout = !g_bulk.empty() ? kTickMs : g_flows.empty() ? -1 : static_cast<int>(kUdpIdleMs / 4);
    int n = epoll_wait(g_epoll, events, 256, timeout);
    if (n < 0 && errno != EINTR) return 1;
    for (int i = 0; i < n; i++) {
      Tag* t = static_cast<Tag*>(events[i].data.ptr);
      switch (t->kind) {
        case Tag::Pidfd:
          return 0;  // the container is gone; slirp4netns follows when our exit pipe closes
        case Tag::Listener: {
          Mapping* m = static_cast<Mapping*>(t->object);
          if (m->udp) relay_udp_in(m);
          else accept_tcp(m);
          break;
        }
        case Tag::Host:
        case Tag::Container:
          serve(static_cast<Conn*>(t->object), t->kind == Tag::Host, events[i].events);
          break;
        case Tag::UdpFlow:
          relay_udp_out(static_cast<Flow*>(t->object));
          break;
      }
    }
    long long now = now_ms();
    if (!g_bulk.empty() && now >= next_tick) {
      next_tick = now + kTickMs;
      tick();
    }
    for (Conn* c : g_closed) {
      if (c->in_bulk) g_bulk.erase(std::find(g_bulk.begin(), g_bulk.end(), c));
      delete c;
    }
    g_closed.clear();
    if (now >= next_sweep) {
      next_sweep = now + kUdpIdleMs / 4;
      std::vector<Flow*> idle;
      for (auto& [key, f] : g_flows)
        if (now - f->last > kUdpIdleMs) idle.push_back(f);
      for (Flow* f : idle) close_flow(f);
    }
  }
}
