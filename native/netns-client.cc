#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "netns.h"
#include "spawn.h"

namespace tsrun {

namespace {

// The holder answers within milliseconds; a hung one must not hang every container start.
const int kReplyTimeoutMs = 10000;

bool read_message(int fd, std::string& out) {
  pollfd p = {fd, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, kReplyTimeoutMs);
  } while (r < 0 && errno == EINTR);
  if (r == 0) {
    errno = ETIMEDOUT;
    return false;
  }
  char buf[4096];
  ssize_t n;
  do {
    n = recv(fd, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return false;
  if (n == 0) {
    errno = ECONNRESET;
    return false;
  }
  out.assign(buf, static_cast<size_t>(n));
  return true;
}

}  // namespace

int netns_connect(const std::string& socket_path, pid_t& holder_pid) {
  sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    close(fd);
    errno = err;
    return -1;
  }
  // "tsrun-netns 1 PID": a holder that accepted us; end of file means it was exiting.
  std::string greeting;
  if (!read_message(fd, greeting) || greeting.compare(0, 14, "tsrun-netns 1 ") != 0) {
    int err = errno ? errno : EPROTO;
    close(fd);
    errno = err == ETIMEDOUT ? ETIMEDOUT : ECONNRESET;
    return -1;
  }
  holder_pid = static_cast<pid_t>(atoi(greeting.c_str() + 14));
  return fd;
}

std::string netns_request_fd(int fd, const std::string& request, int& received) {
  received = -1;
  ssize_t n;
  do {
    n = send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return std::string("err network namespace holder: ") + strerror(errno);
  pollfd p = {fd, POLLIN, 0};
  int r;
  do {
    r = poll(&p, 1, kReplyTimeoutMs);
  } while (r < 0 && errno == EINTR);
  if (r <= 0) return std::string("err network namespace holder: ") + strerror(r == 0 ? ETIMEDOUT : errno);
  char buf[4096];
  received = recv_with_fd(fd, buf, sizeof buf, n);
  if (n <= 0) return std::string("err network namespace holder: ") + strerror(n == 0 ? ECONNRESET : errno);
  std::string reply(buf, static_cast<size_t>(n));
  if (reply.compare(0, 2, "ok") == 0 && received < 0) return "err network namespace holder: no namespace came with the reply";
  return reply;
}

std::string netns_request(int fd, const std::string& request) {
  ssize_t n;
  do {
    n = send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  std::string reply;
  if (n < 0 || !read_message(fd, reply)) return std::string("err network namespace holder: ") + strerror(errno);
  return reply;
}

}  // namespace tsrun
