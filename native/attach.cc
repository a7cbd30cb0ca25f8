// The attach socket of a detached container's monitor (see attach.h for the protocol).
#include "attach.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

namespace tsrun {

namespace {

const size_t kMaxClientBacklog = 4u << 20;
const size_t kMaxPendingInput = 1u << 20;
const size_t kMaxFrame = 1u << 20;

long long now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

std::string frame(int type, const char* data, size_t n) {
  std::string f(5, '\0');
  f[0] = static_cast<char>(type);
  f[1] = static_cast<char>((n >> 24) & 0xff);
  f[2] = static_cast<char>((n >> 16) & 0xff);
  f[3] = static_cast<char>((n >> 8) & 0xff);
  f[4] = static_cast<char>(n & 0xff);
  f.append(data, n);
  return f;
}

}  // namespace

AttachServer::~AttachServer() {
  if (own_input_ && input_fd_ >= 0) close(input_fd_);
  for (auto& c : clients_) close(c.fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

std::string AttachServer::listen_in(const std::string& dir) {
  int dir_fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir_fd < 0) return std::string("open ") + dir + ": " + strerror(errno);
  std::string path = "/proc/self/fd/" + std::to_string(dir_fd) + "/attach.sock";
  unlink(path.c_str());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    int e = errno;
    close(dir_fd);
    return std::string("socket: ") + strerror(e);
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  // Only the user may connect: the socket is made 0600 from the start.
  mode_t old = umask(0077);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int e = errno;
  umask(old);
  close(dir_fd);
  if (rc != 0 || listen(fd, 8) != 0) {
    if (rc == 0) e = errno;
    close(fd);
    return std::string("bind attach.sock: ") + strerror(e);
  }
  listen_fd_ = fd;
  return "";
}

void AttachServer::set_target(int input_fd, int pty_fd, bool own_input) {
  if (own_input_ && input_fd_ >= 0) close(input_fd_);
  input_fd_ = input_fd;
  pty_fd_ = pty_fd;
  own_input_ = own_input;
  close_input_ = false;
  pending_input_.clear();
  if (input_fd_ >= 0) set_nonblocking(input_fd_);
}

void AttachServer::add_poll_fds(std::vector<pollfd>& fds) const {
  if (listen_fd_ >= 0) fds.push_back({listen_fd_, POLLIN, 0});
  for (const auto& c : clients_) fds.push_back({c.fd, static_cast<short>(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0});
  if (input_fd_ >= 0 && !pending_input_.empty()) fds.push_back({input_fd_, POLLOUT, 0});
}

bool AttachServer::handle(const pollfd& p) {
  if (!p.revents) return false;
  if (p.fd == listen_fd_) {
    accept_one();
    return true;
  }
  if (p.fd == input_fd_ && p.events == POLLOUT) {
    flush_input();
    return true;
  }
  for (size_t i = 0; i < clients_.size(); i++) {
    if (clients_[i].fd != p.fd) continue;
    if (p.revents & POLLOUT) write_client(i);
    if (i < clients_.size() && clients_[i].fd == p.fd && (p.revents & (POLLIN | POLLHUP | POLLERR))) read_client(i);
    return true;
  }
  return false;
}

void AttachServer::accept_one() {
  int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return;
  // Belt and braces beside the socket's mode: only our own user may attach.
  ucred cred{};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != getuid()) {
    close(fd);
    return;
  }
  clients_.push_back({fd, "", ""});
}

void AttachServer::drop(size_t i) {
  close(clients_[i].fd);
  clients_.erase(clients_.begin() + static_cast<long>(i));
}

void AttachServer::read_client(size_t i) {
  char buf[16384];
  ssize_t n = read(clients_[i].fd, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
  if (n <= 0) {
    drop(i);  // the client detached
    return;
  }
  std::string& in = clients_[i].in;
  in.append(buf, static_cast<size_t>(n));
  while (in.size() >= 5) {
    auto byte = [&](size_t k) { return static_cast<size_t>(static_cast<unsigned char>(in[k])); };
    size_t len = (byte(1) << 24) | (byte(2) << 16) | (byte(3) << 8) | byte(4);
    if (len > kMaxFrame) {
      drop(i);
      return;
    }
    if (in.size() < 5 + len) break;
    int type = in[0];
    if (type == 0 && input_fd_ >= 0) {
      if (pending_input_.size() + len <= kMaxPendingInput) pending_input_.append(in, 5, len);
    } else if (type == 4 && own_input_) {
      close_input_ = true;
    } else if (type == 3 && len == 4 && pty_fd_ >= 0) {
      struct winsize ws {};
      ws.ws_row = static_cast<unsigned short>((byte(5) << 8) | byte(6));
      ws.ws_col = static_cast<unsigned short>((byte(7) << 8) | byte(8));
      ioctl(pty_fd_, TIOCSWINSZ, &ws);
    }
    in.erase(0, 5 + len);
  }
  flush_input();
}

void AttachServer::write_client(size_t i) {
  Client& c = clients_[i];
  while (!c.out.empty()) {
    ssize_t n = write(c.fd, c.out.data(), c.out.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      drop(i);
      return;
    }
    c.out.erase(0, static_cast<size_t>(n));
  }
}

void AttachServer::flush_input() {
  while (input_fd_ >= 0 && !pending_input_.empty()) {
    ssize_t n = write(input_fd_, pending_input_.data(), pending_input_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      // The container closed its stdin: what it will not read is dropped.
      pending_input_.clear();
      return;
    }
    pending_input_.erase(0, static_cast<size_t>(n));
  }
  if (close_input_ && own_input_ && input_fd_ >= 0 && pending_input_.empty()) {
    close(input_fd_);
    input_fd_ = -1;
  }
}

void AttachServer::broadcast(int stream, const char* data, size_t n) {
  if (clients_.empty()) return;
  std::string f = frame(stream, data, n);
  for (size_t i = clients_.size(); i-- > 0;) {
    clients_[i].out += f;
    write_client(i);
    if (i < clients_.size() && clients_[i].out.size() > kMaxClientBacklog) drop(i);
  }
}

void AttachServer::wait_for_client(int timeout_ms) {
  if (listen_fd_ < 0) return;
  long long deadline = now_ms() + timeout_ms;
  while (clients_.empty()) {
    long long left = deadline - now_ms();
    if (left <= 0) return;
    pollfd p{listen_fd_, POLLIN, 0};
    int r = poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno != EINTR) return;
    if (r > 0) accept_one();
  }
}

void AttachServer::close_clients() {
  // What the container wrote last still reaches the clients (bounded: one second in all).
  long long deadline = now_ms() + 1000;
  for (size_t i = clients_.size(); i-- > 0;) {
    while (i < clients_.size() && !clients_[i].out.empty() && now_ms() < deadline) {
      pollfd p{clients_[i].fd, POLLOUT, 0};
      if (poll(&p, 1, static_cast<int>(deadline - now_ms())) <= 0) break;
      write_client(i);
    }
  }
  for (auto& c : clients_) close(c.fd);
  clients_.clear();
  set_target(-1, -1, false);
}

}  // namespace tsrun
