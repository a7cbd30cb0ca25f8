// tsrun-netns: the holder of the user namespace and of user-defined networks, one per user
// (Podman's pause process and rootless network namespace in one).
//
// tsrun starts it inside a new user namespace U (the full subordinate id mapping, written by
// newuidmap/newgidmap) and a new network namespace N. Containers and storage helpers are
// started inside U (the launcher joins U before cloning them with their other namespaces), so
// no start pays for the setuid id-map tools. N holds one bridge per user-defined network; this
// process, root in U, has CAP_NET_ADMIN over a container's network namespace: it creates a veth
// pair, keeps one end on the network's bridge in N and moves the other into the container's
// namespace, where it sets the address.
//
// Usage: tsrun-netns SOCKET_PATH   (fd 1: a pipe that gets "ready PID\n")
// It forks into the background at once (its parent exits), listens on SOCKET_PATH (a
// SOCK_SEQPACKET unix socket in tsrun's private run directory), greets each client with
// "tsrun-netns 1 PID" and answers one-line requests:
//   attach PID IFNAME BRIDGE BRIDGE_CIDR ADDRESS_CIDR MAC MTU   -> "ok" | "err MESSAGE"
//   detach PID IFNAME                                            -> "ok" | "err MESSAGE"
//   rmbridge BRIDGE                                              -> "ok" | "err MESSAGE"
//   newnet                                                       -> "ok" + fd | "err MESSAGE"
// newnet makes a network namespace owned by U and sends it back (SCM_RIGHTS) without keeping a
// reference: a foreground run starts slirp4netns in it while it writes the container's record,
// then starts the container inside it, so the helper's ~10 ms set-up is no longer on the way.
// Every container start (the CLI of a foreground run, the tsrun-monitor of a detached one)
// keeps a connection open for the container's life, a helper until it runs. When no client has
// been connected for a minute the holder exits, and the namespaces with it (so back-to-back
// commands share one, and nothing lingers long); the next start makes a new one. The
// exit is decided under SOCKET_PATH.lock, which a starting client holds while it connects or
// starts a holder, so no client is ever greeted by a holder that then leaves.
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <sstream>
#include <string>
#include <vector>

#include "netlink.h"
#include "spawn.h"

namespace {

const int kIdleExitMs = 60000;
int g_self_netns = -1;

long long now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

std::string errno_text(const std::string& what, int err) { return what + ": " + strerror(err); }

// The bridge of a network, created (with the gateway address, up) on first use.
std::string ensure_bridge(tsrun::Netlink& nl, const std::string& name, const std::string& gateway_cidr, int mtu,
                          int& index) {
  if (nl.link_index(name, index) == 0) return "";
  int err = nl.create_bridge(name, mtu);
  if (err && err != EEXIST) return nl.what();
  if (nl.link_index(name, index) != 0) return nl.what();
  uint32_t gw;
  int prefix;
  if (!tsrun::parse_cidr(gateway_cidr, gw, prefix)) return "bad gateway " + gateway_cidr;
  // Best effort: two stores may give their networks the same subnet; the bridges still work.
  nl.add_ipv4(index, gw, prefix);
  if (nl.set_up(index) != 0) return nl.what();
  return "";
}

std::string attach(const std::vector<std::string>& w) {
  if (w.size() != 8) return "attach: expected PID IFNAME BRIDGE BRIDGE_CIDR ADDRESS_CIDR MAC MTU";
  const std::string &pid = w[1], &ifname = w[2], &bridge = w[3], &gateway = w[4], &address = w[5], &mac_text = w[6];
  int mtu = atoi(w[7].c_str());
  uint32_t addr;
  int prefix;
  unsigned char mac[6];
  if (!tsrun::parse_cidr(address, addr, prefix)) return "bad address " + address;
  if (!tsrun::parse_mac(mac_text, mac)) return "bad MAC address " + mac_text;
  tsrun::Netlink nl;
  if (!nl.ok()) return errno_text("netlink socket", errno);
  int bridge_index = 0;
  std::string err = ensure_bridge(nl, bridge, gateway, mtu, bridge_index);
  if (!err.empty()) return err;
  std::string ns_path = "/proc/" + pid + "/ns/net";
  int ns = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) return errno_text("open " + ns_path, errno);
  // The kernel names the host end (vethN); the container's end is created in its namespace.
  if (nl.create_veth("", ifname, ns, bridge_index, mtu, mac) != 0) {
    close(ns);
    return nl.what();
  }
  // A netlink socket made inside the container's namespace configures its end.
  if (setns(ns, CLONE_NEWNET) != 0) {
    int e = errno;
    close(ns);
    return errno_text("enter the container's network namespace", e);
  }
  tsrun::Netlink inside;
  int inside_errno = errno;
  if (setns(g_self_netns, CLONE_NEWNET) != 0) {
    // Cannot happen short of a kernel bug; a holder in the wrong namespace must not go on.
    _exit(1);
  }
  close(ns);
  if (!inside.ok()) return errno_text("netlink socket in the container", inside_errno);
  int index = 0;
  if (inside.link_index(ifname, index) != 0 || inside.add_ipv4(index, addr, prefix) != 0 || inside.set_up(index) != 0)
    return inside.what();
  return "";
}

std::string detach(const std::vector<std::string>& w) {
  if (w.size() != 3) return "detach: expected PID IFNAME";
  std::string ns_path = "/proc/" + w[1] + "/ns/net";
  int ns = open(ns_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) return errno_text("open " + ns_path, errno);
  if (setns(ns, CLONE_NEWNET) != 0) {
    int e = errno;
    close(ns);
    return errno_text("enter the container's network namespace", e);
  }
  std::string err;
  {
    // Deleting one end of a veth pair deletes both.
    tsrun::Netlink inside;
    if (!inside.ok()) err = errno_text("netlink socket in the container", errno);
    else if (inside.delete_link(w[2]) != 0) err = inside.what();
  }
  if (setns(g_self_netns, CLONE_NEWNET) != 0) _exit(1);
  close(ns);
  return err;
}

std::string remove_bridge(const std::vector<std::string>& w) {
  if (w.size() != 2) return "rmbridge: expected BRIDGE";
  tsrun::Netlink nl;
  if (!nl.ok()) return errno_text("netlink socket", errno);
  int err = nl.delete_link(w[1]);
  return err == 0 || err == ENODEV ? "" : nl.what();
}

std::string handle(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> w;
  std::string word;
  while (in >> word) w.push_back(word);
  if (w.empty()) return "err empty request";
  std::string err;
  if (w[0] == "attach") err = attach(w);
  else if (w[0] == "detach") err = detach(w);
  else if (w[0] == "rmbridge") err = remove_bridge(w);
  else if (w[0] != "ping") err = "unknown request " + w[0];
  return err.empty() ? "ok" : "err " + err;
}

void send_text(int fd, const std::string& s) {
  ssize_t n;
  do {
    n = send(fd, s.data(), s.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
}

// A new network namespace owned by U (this process is root in U), or -1 and err. The holder
// goes back to N at once: it serves the user-defined networks from there.
int new_netns(std::string& err) {
  if (unshare(CLONE_NEWNET) != 0) {
    err = errno_text("new network namespace", errno);
    return -1;
  }
  int fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  int open_errno = errno;
  // Staying in the new namespace would break every user-defined network: leave instead (the
  // next start brings up a new holder).
  if (setns(g_self_netns, CLONE_NEWNET) != 0) _exit(1);
  if (fd < 0) err = errno_text("open the new network namespace", open_errno);
  return fd;
}

// "ok" with the namespace's fd attached, or "err MESSAGE".
void send_new_netns(int client) {
  std::string err;
  int ns = new_netns(err);
  if (ns < 0) {
    send_text(client, "err " + err);
    return;
  }
  tsrun::send_with_fd(client, "ok", 2, ns, MSG_DONTWAIT);
  close(ns);
}

void greet(int fd) { send_text(fd, "tsrun-netns 1 " + std::to_string(getpid())); }

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: tsrun-netns SOCKET_PATH\n");
    return 2;
  }
  std::string socket_path = argv[1];
  std::string lock_path = socket_path + ".lock";
  signal(SIGPIPE, SIG_IGN);
  // The parent exits at once, so that whoever started us never has to reap the holder.
  pid_t child = fork();
  if (child < 0) return 1;
  if (child > 0) _exit(0);
  setsid();
  g_self_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (g_self_netns < 0 || socket_path.size() >= sizeof addr.sun_path) return 1;
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  // A socket file left by a holder that was killed: the client that started us holds the lock.
  unlink(socket_path.c_str());
  if (listener < 0 || bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(listener, 64) != 0) {
    fprintf(stderr, "tsrun-netns: listen on %s: %s\n", socket_path.c_str(), strerror(errno));
    return 1;
  }
  std::string ready = "ready " + std::to_string(getpid()) + "\n";
  if (write(1, ready.data(), ready.size()) < 0) return 1;
  tsrun::stdio_to_devnull();

  std::vector<int> clients;
  long long idle_since = now_ms();
  for (;;) {
    std::vector<pollfd> fds;
    fds.push_back({listener, POLLIN, 0});
    for (int c : clients) fds.push_back({c, POLLIN, 0});
    int timeout = -1;
    if (clients.empty()) {
      long long left = idle_since + kIdleExitMs - now_ms();
      timeout = left > 0 ? static_cast<int>(left) : 0;
    }
    int r = poll(fds.data(), fds.size(), timeout);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0 && clients.empty()) {
      // Idle: leave, unless a client is connecting right now (it holds the lock, or it is in
      // the accept queue).
      int lock = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (lock >= 0 && flock(lock, LOCK_EX | LOCK_NB) == 0) {
        int c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) {
          unlink(socket_path.c_str());
          return 0;  // the lock goes with the process
        }
        greet(c);
        clients.push_back(c);
      }
      if (lock >= 0) close(lock);
      idle_since = now_ms();
      continue;
    }
    std::vector<int> still;
    for (size_t i = 1; i < fds.size(); i++) {
      int fd = fds[i].fd;
      bool keep = true;
      if (fds[i].revents & POLLIN) {
        char buf[4096];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0 && std::string(buf, static_cast<size_t>(n)) == "newnet") send_new_netns(fd);
        else if (n > 0) send_text(fd, handle(std::string(buf, static_cast<size_t>(n))));
        else if (n == 0 || (errno != EAGAIN && errno != EINTR)) keep = false;
      } else if (fds[i].revents & (POLLHUP | POLLERR | POLLNVAL)) {
        keep = false;
      }
      if (keep) still.push_back(fd);
      else close(fd);
    }
    if (fds[0].revents & POLLIN) {
      int c;
      while ((c = accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0) {
        greet(c);
        still.push_back(c);
      }
    }
    clients.swap(still);
    if (clients.empty()) idle_since = now_ms();
  }
}
