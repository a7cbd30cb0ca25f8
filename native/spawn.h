// Launching a process into new namespaces: the plan (decoded before clone) and the launcher.
//
// The plan arrives from TypeScript as one Buffer: a sequence of records, each
//   key '\0' count '\0' field_1 '\0' ... field_count '\0'
// Keeping the wire format this simple means the same decoder can serve a future standalone
// monitor executable that reads the plan from a file, without JSON in C++.
#pragma once

#include <string>
#include <vector>
#include <sys/types.h>

#include "security.h"

namespace tsrun {

// One step that runs inside the child, in order, before or after pivot_root.
struct PlanOp {
  enum Kind {
    Mount,        // fields: source, target (in-root), fstype, flags, data, create (dir|file|none)
    BindHost,     // fields: host source, target (in-root), flags, create (dir|file), recursive(0|1)
    BindFromNs,   // fields: mount namespace file, source (in that namespace), target dir (in-root)
    Symlink,      // fields: link target, path (in-root)
    Mkdir,        // fields: path (in-root), mode (octal)
    Mask,         // fields: path (after pivot)
    ReadOnly,     // fields: path (after pivot)
    Sysctl,       // fields: /proc/sys/... path (after pivot, before the read-only paths), value
  } kind;
  std::vector<std::string> fields;
  // Decoded numeric fields, so the child does no parsing.
  unsigned long flags = 0;
  unsigned mode = 0;
  bool recursive = false;
};

struct LaunchPlan {
  unsigned long clone_flags = 0;
  std::string rootfs;           // empty: no new root (a helper that only needs the namespaces)
  std::string root_source;      // overlay source, or empty to bind the rootfs onto itself
  std::string root_fstype;
  std::string root_data;
  std::string root_cwd;         // chdir here before mounting the root: overlay's lowerdir may be relative
  unsigned long root_flags = 0;
  bool root_readonly = false;
  std::string hostname;
  std::string domainname;  // --domainname (and --sysctl kernel.domainname): setdomainname(2)
  std::vector<PlanOp> pre_pivot;   // mounts and files inside the new root
  std::vector<PlanOp> post_pivot;  // masks and read-only paths
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string path_env;            // PATH used for the executable lookup
  std::string cwd;
  bool create_cwd = false;
  bool have_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;
  bool set_groups = true;          // false when setgroups is denied (single-id mapping)
  bool tty = false;
  unsigned short rows = 0, cols = 0;
  int stdio[3] = {-1, -1, -1};     // host fds to place at 0,1,2; -1 keeps the inherited one
  bool stdin_null = false;         // open the container's /dev/null as stdin
  bool no_new_privs = false;
  bool loopback_up = false;        // bring "lo" up in a new network namespace
  // Wait for a second byte on the sync pipe once the root and stdio are set up, just before the
  // fds are closed and the command runs: the parent connects the network meanwhile.
  bool hold_before_exec = false;
  // exec into a running container: namespace files to join (/proc/PID/ns/user first). The
  // child joins them, then clones the command with CLONE_PARENT so that it enters the pid
  // namespace and is the caller's own child; its pid is reported through the error pipe.
  std::vector<std::string> join_ns;
  bool die_with_parent = true;
  bool become_root = true;         // setresuid(0) in the new user namespace before anything
  bool unshare_cgroup = false;     // new cgroup namespace after the parent moved us to our cgroup
  SecurityPlan security;           // capabilities, rlimits, seccomp (native/security.h)
  // The user namespace of tsrun-netns (a path such as /proc/HOLDER/ns/user), which has the full
  // id mapping: an intermediate joins it and clones the child there with the other namespaces
  // (no CLONE_NEWUSER, no newuidmap/newgidmap per start, as Podman's containers share its pause
  // process's), and the holder, root there, can move an interface into the child's network.
  std::string nest_userns;
  // Namespaces of a running container (/proc/PID/ns/pid, ipc, uts) that the nested launcher
  // joins after the user namespace, before it clones the child: --pid, --ipc, --uts
  // container:NAME. The child then does not make those itself. Only with nest_userns, the
  // namespaces' owner, where the launcher has the capabilities setns needs.
  std::vector<std::string> share_ns;
};

// Starts a helper tool (newuidmap, newgidmap, pasta) with posix_spawnp: default signal
// dispositions and an empty mask (the caller may ignore SIGPIPE, and pasta refuses to start
// with SIGPIPE ignored), /dev/null on 0 and 1 (never a closed fd: a tool that daemonizes would
// get its own fds renumbered onto them), and stderr_fd on 2 when >= 0.
// Returns 0 or the posix_spawn error number.
int spawn_tool(pid_t& pid, char* const argv[], int stderr_fd);

// Points fds 0-2 at /dev/null: for the helpers that go on in the background (tsrun-netns,
// tsrun-forward) once they have reported that they are ready.
void stdio_to_devnull();

// Decodes the wire format. Returns an empty string on success, else what is wrong.
std::string decode_plan(const char* data, size_t len, LaunchPlan& plan);

// What a failed child reports through the error pipe.
struct ChildError {
  int32_t err;        // errno, or 0; for kind -1 the pid of the command
  int32_t kind;       // 0: setup failure (125), 1: command not found (127), 2: cannot invoke (126),
                      // -1: not an error: "the command runs as pid err" (exec into a container)
  char step[1016];    // which step failed, e.g. "mount /proc"
};

struct Launched {
  pid_t pid = -1;
  int pidfd = -1;
  int sync_fd = -1;   // parent writes one byte here once the id maps are written
  int error_fd = -1;  // EOF means the exec succeeded; a ChildError means it did not
  int socket_fd = -1; // receives the pty master (SCM_RIGHTS) when plan.tty
};

// Lets a launched child go on (after its id maps are written), then blocks until it has exec'd
// or failed. pty_fd receives the pty master when tty. Returns true when the exec succeeded;
// otherwise error holds what the child reported.
// For an exec into a container, command_pid receives the pid of the command (else l.pid).
bool resume(Launched& l, bool tty, int& pty_fd, ChildError& error, pid_t* command_pid = nullptr);

// One message with one fd attached (SCM_RIGHTS) over a unix socket: the child's pty master to
// the parent, the holder's new network namespace to a client. Async-signal-safe (the child
// calls it between clone and exec). flags: sendmsg's, MSG_NOSIGNAL always added.
bool send_with_fd(int sock, const void* data, size_t len, int fd, int flags = 0);

// Receives one such message into buf (at most cap bytes; got: its length, 0 at end of file, -1
// on an error with errno set) and returns the fd that came with it (close-on-exec), or -1.
int recv_with_fd(int sock, void* buf, size_t cap, ssize_t& got);

// Clones the child. The child waits on the sync pipe before doing anything else.
// Returns an empty string on success, else a message with errno.
std::string launch(const LaunchPlan& plan, Launched& out);

}  // namespace tsrun
