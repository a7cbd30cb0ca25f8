// User-defined networks: the client side of tsrun-netns, the process that holds the user and
// network namespaces every container on a user-defined network hangs from (see netns.cc).
// Used by the addon (foreground runs) and by tsrun-monitor (detached containers).
#pragma once

#include <sys/types.h>

#include <string>

namespace tsrun {

// Connects to the holder's socket and reads its greeting. Returns the connected fd
// (close-on-exec) and the holder's pid, or -1 with errno set: ENOENT or ECONNREFUSED when no
// holder listens, ECONNRESET when it was just exiting (connect again after starting one).
int netns_connect(const std::string& socket_path, pid_t& holder_pid);

// Sends one request line and returns the holder's reply: "ok ..." or "err MESSAGE".
std::string netns_request(int fd, const std::string& request);

// The same for a request answered with an fd (newnet): received is the fd (close-on-exec), or
// -1 when the reply carries none.
std::string netns_request_fd(int fd, const std::string& request, int& received);

}  // namespace tsrun
