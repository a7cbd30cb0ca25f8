// The attach socket of a detached container's monitor. `tsrun attach` and `start -a` connect to
// CONTAINER_DIR/attach.sock: they get the container's output live and send its input.
//
// Frames, both ways: 1 byte type, 4 bytes big-endian payload length, the payload.
//   monitor -> client: 1 stdout, 2 stderr (a pty's output is stdout)
//   client -> monitor: 0 input for the container's stdin, 3 window size (rows, cols: u16 BE each),
//                      4 close the container's stdin once the input before it is written
//                      (start -ai: the end of the user's input is the end of the container's)
// A client that stops reading is dropped once 4 MiB wait for it: it must not hold up the
// container's output or its log.
#pragma once

#include <poll.h>

#include <string>
#include <vector>

namespace tsrun {

class AttachServer {
 public:
  ~AttachServer();

  // Listens on DIR/attach.sock (mode 0600), bound through /proc/self/fd/N so that a long store
  // path fits in sun_path. Returns an empty string, or what failed.
  std::string listen_in(const std::string& dir);

  // Where input goes (the stdin pipe or the pty master), -1 to drop it; pty: for window sizes.
  // With own_input the server closes input_fd when asked to (frame 4) or at the next target.
  void set_target(int input_fd, int pty_fd, bool own_input);

  // The fds to poll: the listening socket, each client, and the input fd while input waits.
  void add_poll_fds(std::vector<pollfd>& fds) const;

  // Handles one polled fd; false when it is not one of ours.
  bool handle(const pollfd& p);

  // Sends output to every client (stream 1 stdout, 2 stderr).
  void broadcast(int stream, const char* data, size_t n);

  // Waits up to timeout_ms for a first client (start -a: no output may be missed).
  void wait_for_client(int timeout_ms);

  // Flushes what it can (bounded) and closes every client: the run is over.
  void close_clients();

 private:
  struct Client {
    int fd;
    std::string in;   // bytes received, not yet a whole frame
    std::string out;  // frames not yet written
  };
  void accept_one();
  void drop(size_t i);
  void read_client(size_t i);
  void write_client(size_t i);
  void flush_input();

  int listen_fd_ = -1;
  int input_fd_ = -1;
  int pty_fd_ = -1;
  bool own_input_ = false;
  bool close_input_ = false;
  std::string pending_input_;
  std::vector<Client> clients_;
};

}  // namespace tsrun
