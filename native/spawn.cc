// The launcher: clone into namespaces, wait for the id maps, build the root, pivot, exec.
//
// Node is multithreaded, so everything after clone() in the child must be async-signal-safe:
// raw syscalls on buffers prepared by the parent, no malloc, no stdio, no locks. Every string
// the child needs is built into the LaunchPlan before clone().
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/openat2.h>
#include <sched.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <net/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <termios.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef MOVE_MOUNT_T_EMPTY_PATH
#define MOVE_MOUNT_T_EMPTY_PATH 0x00000040
#endif
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

extern char** environ;

namespace tsrun {

// ---------------------------------------------------------------------------------------------
// Decoding (parent side, may allocate)

namespace {

struct Reader {
  const char* p;
  const char* end;
  bool next(std::string& out) {
    if (p >= end) return false;
    const char* z = static_cast<const char*>(memchr(p, '\0', end - p));
    if (!z) return false;
    out.assign(p, z - p);
    p = z + 1;
    return true;
  }
};

bool to_ulong(const std::string& s, unsigned long& out, int base = 10) {
  if (s.empty()) return false;
  char* e = nullptr;
  errno = 0;
  out = strtoul(s.c_str(), &e, base);
  return errno == 0 && e && *e == '\0';
}

}  // namespace

int spawn_tool(pid_t& pid, char* const argv[], int stderr_fd) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  if (stderr_fd >= 0) posix_spawn_file_actions_adddup2(&fa, stderr_fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  return rc;
}

void stdio_to_devnull() {
  int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) return;
  for (int fd = 0; fd < 3; fd++) dup2(devnull, fd);
  close(devnull);
}

std::string decode_plan(const char* data, size_t len, LaunchPlan& plan) {
  Reader r{data, data + len};
  std::string key, count_s;
  while (r.p < r.end) {
    if (!r.next(key) || !r.next(count_s)) return "truncated record";
    unsigned long count = 0;
    if (!to_ulong(count_s, count) || count > 100000) return "bad field count for " + key;
    std::vector<std::string> f(count);
    for (auto& s : f)
      if (!r.next(s)) return "truncated fields for " + key;
    auto need = [&](size_t n) { return f.size() == n; };
    unsigned long v = 0;
    if (key == "clone") {
      if (!need(1) || !to_ulong(f[0], plan.clone_flags)) return "bad clone";
    } else if (key == "root") {
      if (!need(5) || !to_ulong(f[4], plan.root_flags)) return "bad root";
      plan.rootfs = f[0];
      plan.root_source = f[1];
      plan.root_fstype = f[2];
      plan.root_data = f[3];
    } else if (key == "root-cwd") {
      if (!need(1)) return "bad root-cwd";
      plan.root_cwd = f[0];
    } else if (key == "root-readonly") {
      plan.root_readonly = true;
    } else if (key == "hostname") {
      if (!need(1)) return "bad hostname";
      plan.hostname = f[0];
    } else if (key == "domainname") {
      if (!need(1)) return "bad domainname";
      plan.domainname = f[0];
    } else if (key == "mount") {
      if (!need(6)) return "bad mount";
      PlanOp op{PlanOp::Mount, f};
      if (!to_ulong(f[3], op.flags)) return "bad mount flags";
      plan.pre_pivot.push_back(op);
    } else if (key == "bind") {
      if (!need(5)) return "bad bind";
      PlanOp op{PlanOp::BindHost, f};
      if (!to_ulong(f[2], op.flags)) return "bad bind flags";
      op.recursive = f[4] == "1";
      plan.pre_pivot.push_back(op);
    } else if (key == "bind-from-ns") {
      if (!need(3)) return "bad bind-from-ns";
      plan.pre_pivot.push_back(PlanOp{PlanOp::BindFromNs, f});
    } else if (key == "symlink") {
      if (!need(2)) return "bad symlink";
      plan.pre_pivot.push_back(PlanOp{PlanOp::Symlink, f});
    } else if (key == "mkdir") {
      if (!need(2)) return "bad mkdir";
      PlanOp op{PlanOp::Mkdir, f};
      if (!to_ulong(f[1], v, 8)) return "bad mkdir mode";
      op.mode = static_cast<unsigned>(v);
      plan.pre_pivot.push_back(op);
    } else if (key == "mask") {
      if (!need(1)) return "bad mask";
      plan.post_pivot.push_back(PlanOp{PlanOp::Mask, f});
    } else if (key == "readonly") {
      if (!need(1)) return "bad readonly";
      plan.post_pivot.push_back(PlanOp{PlanOp::ReadOnly, f});
    } else if (key == "sysctl") {
      if (!need(2)) return "bad sysctl";
      plan.post_pivot.push_back(PlanOp{PlanOp::Sysctl, f});
    } else if (key == "argv") {
      if (f.empty()) return "empty argv";
      plan.argv = f;
    } else if (key == "env") {
      plan.env = f;
    } else if (key == "path") {
      if (!need(1)) return "bad path";
      plan.path_env = f[0];
    } else if (key == "cwd") {
      if (!need(2)) return "bad cwd";
      plan.cwd = f[0];
      plan.create_cwd = f[1] == "1";
    } else if (key == "user") {
      if (f.size() < 2) return "bad user";
      unsigned long u = 0, g = 0;
      if (!to_ulong(f[0], u) || !to_ulong(f[1], g)) return "bad user ids";
      plan.have_user = true;
      plan.uid = static_cast<uid_t>(u);
      plan.gid = static_cast<gid_t>(g);
      for (size_t i = 2; i < f.size(); i++) {
        if (!to_ulong(f[i], v)) return "bad group id";
        plan.groups.push_back(static_cast<gid_t>(v));
      }
    } else if (key == "no-setgroups") {
      plan.set_groups = false;
    } else if (key == "tty") {
      unsigned long rows = 0, cols = 0;
      if (!need(2) || !to_ulong(f[0], rows) || !to_ulong(f[1], cols)) return "bad tty";
      plan.tty = true;
      plan.rows = static_cast<unsigned short>(rows);
      plan.cols = static_cast<unsigned short>(cols);
    } else if (key == "stdio") {
      if (!need(3)) return "bad stdio";
      for (int i = 0; i < 3; i++) {
        long fd = strtol(f[i].c_str(), nullptr, 10);
        plan.stdio[i] = static_cast<int>(fd);
      }
    } else if (key == "stdin-null") {
      plan.stdin_null = true;
    } else if (key == "join") {
      plan.join_ns = f;
    } else if (key == "loopback-up") {
      plan.loopback_up = true;
    } else if (key == "hold-before-exec") {
      plan.hold_before_exec = true;
    } else if (key == "no-new-privs") {
      plan.no_new_privs = true;
    } else if (key == "keep-with-parent") {
      plan.die_with_parent = false;
    } else if (key == "no-become-root") {
      plan.become_root = false;
    } else if (key == "unshare-cgroup") {
      plan.unshare_cgroup = true;
    } else if (key == "share") {
      plan.share_ns = f;
    } else if (key == "nest") {
      if (!need(1)) return "bad nest";
      plan.nest_userns = f[0];
    } else {
      std::string security_err;
      if (!decode_security(key, f, plan.security, security_err)) return "unknown plan key " + key;
      if (!security_err.empty()) return security_err;
    }
  }
  if (plan.argv.empty()) return "plan has no argv";
  if (!plan.join_ns.empty() && (plan.clone_flags != 0 || !plan.rootfs.empty()))
    return "a plan joins namespaces or creates them, not both";
  if (!plan.nest_userns.empty() && (plan.clone_flags & CLONE_NEWUSER)) return "a plan joins the holder's user namespace or makes one, not both";
  if (!plan.share_ns.empty() && plan.nest_userns.empty()) return "a plan shares namespaces only from a nested launch";
  if (plan.share_ns.size() > 8 || plan.join_ns.size() > 16) return "too many namespaces to join";
  return "";
}

// ---------------------------------------------------------------------------------------------
// Child side: async-signal-safe only.

namespace {

struct ChildArgs {
  const LaunchPlan* plan;
  // C string arrays prepared by the parent, so the child never allocates.
  char* const* argv;
  char* const* envp;
  int sync_fd;
  int error_fd;
  int socket_fd;
  // The parent's ends, inherited by the clone: closed first thing, or an aborted start (the
  // parent closing its sync end) would never reach the child as end of file.
  int parent_fds[3];
};

size_t str_len(const char* s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

// Appends src to dst (capacity cap), always NUL-terminated.
void append(char* dst, size_t cap, const char* src) {
  size_t n = str_len(dst);
  while (*src && n + 1 < cap) dst[n++] = *src++;
  dst[n] = '\0';
}

void append_int(char* dst, size_t cap, long v) {
  char tmp[24];
  int i = 0;
  bool neg = v < 0;
  unsigned long u = neg ? static_cast<unsigned long>(-v) : static_cast<unsigned long>(v);
  do {
    tmp[i++] = static_cast<char>('0' + u % 10);
    u /= 10;
  } while (u);
  if (neg) tmp[i++] = '-';
  char out[24];
  int j = 0;
  while (i) out[j++] = tmp[--i];
  out[j] = '\0';
  append(dst, cap, out);
}

// Lets TCP over the namespace's loopback build segments of up to 512 KiB ("BIG TCP", Linux 6.3
// for IPv4, 5.19 for IPv6) instead of 64 KiB: an eighth of the per-packet work. Every byte that
// `-p` forwards crosses the container's loopback once (tsrun-forward connects to the server
// there), and so does traffic between processes of one container: iperf3 on a namespace's lo went
// from 13 to 22 Gbit/s on this project's machines. Best effort: an older kernel refuses the sizes
// (or ignores attributes it does not know), and lo stays as it was. Called in the child after
// clone(): a stack buffer and raw syscalls only.
static void enlarge_loopback_segments() {
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) return;
  // IFLA_GSO_IPV4_MAX_SIZE / IFLA_GRO_IPV4_MAX_SIZE (63, 64) and IFLA_GSO_MAX_SIZE /
  // IFLA_GRO_MAX_SIZE (41, 58), by number: older kernel headers lack the first two.
  const unsigned short attr_pairs[2][2] = {{63, 64}, {41, 58}};
  const unsigned sizes[] = {524280, 262144};
  for (const auto& pair : attr_pairs) {
    for (unsigned size : sizes) {
      struct {
        nlmsghdr header;
        ifinfomsg link;
        struct {
          nlattr attr;
          uint32_t value;
        } attrs[2];
      } req;
      memset(&req, 0, sizeof req);
      req.header.nlmsg_len = sizeof req;
      req.header.nlmsg_type = RTM_NEWLINK;
      req.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
      req.link.ifi_family = AF_UNSPEC;
      req.link.ifi_index = 1;  // lo is always 1 in a new network namespace
      for (int i = 0; i < 2; i++) {
        req.attrs[i].attr.nla_len = sizeof req.attrs[i];
        req.attrs[i].attr.nla_type = pair[i];
        req.attrs[i].value = size;
      }
      if (send(s, &req, sizeof req, 0) != static_cast<ssize_t>(sizeof req)) break;
      char reply[512];
      ssize_t n = recv(s, reply, sizeof reply, 0);
      if (n < static_cast<ssize_t>(sizeof(nlmsghdr) + sizeof(nlmsgerr))) break;
      auto* answer = reinterpret_cast<nlmsghdr*>(reply);
      if (answer->nlmsg_type == NLMSG_ERROR && reinterpret_cast<nlmsgerr*>(NLMSG_DATA(answer))->error == 0) break;
    }
  }
  close(s);
}

[[noreturn]] void child_fail(int error_fd, int kind, int err, const char* step, const char* detail = nullptr) {
  ChildError e;
  memset(&e, 0, sizeof e);
  e.err = err;
  e.kind = kind;
  append(e.step, sizeof e.step, step);
  if (detail) append(e.step, sizeof e.step, detail);
  ssize_t unused = write(error_fd, &e, sizeof e);
  (void)unused;
  _exit(kind == 1 ? 127 : kind == 2 ? 126 : 125);
}

int openat2_in_root(int root_fd, const char* path, int flags, unsigned long long extra_resolve = 0) {
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = static_cast<unsigned long long>(flags) | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | extra_resolve;
  // A leading '/' is fine: RESOLVE_IN_ROOT treats it as the root itself.
  return static_cast<int>(syscall(SYS_openat2, root_fd, path, &how, sizeof how));
}

// Resolves path inside root (never leaving it through symlinks or ".."), creating what is
// missing: intermediate directories, and the last component as a directory or empty file.
// create: 'd', 'f', or 'n' (must exist). Returns an O_PATH fd or -1 with errno set.
int resolve_create(int root_fd, const char* path, char create) {
  int fd = openat2_in_root(root_fd, path, O_PATH);
  if (fd >= 0 || errno != ENOENT || create == 'n') return fd;
  char buf[4096];
  size_t n = str_len(path);
  if (n + 1 >= sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  memcpy(buf, path, n + 1);
  // Walk component by component; each prefix is resolved in the root again.
  size_t i = 0;
  while (buf[i] == '/') i++;
  while (i < n) {
    size_t start = i;
    while (i < n && buf[i] != '/') i++;
    bool last = true;
    for (size_t k = i; k < n; k++)
      if (buf[k] != '/') last = false;
    char saved = buf[i];
    buf[i] = '\0';
    int probe = openat2_in_root(root_fd, buf, O_PATH);
    if (probe >= 0) {
      close(probe);
    } else if (errno == ENOENT) {
      // Create buf[start..i) inside its parent, resolved in the root.
      char saved_start = buf[start > 0 ? start - 1 : 0];
      int parent;
      if (start == 0) {
        parent = openat2_in_root(root_fd, ".", O_PATH | O_DIRECTORY);
      } else {
        buf[start - 1] = '\0';
        parent = openat2_in_root(root_fd, buf[0] ? buf : "/", O_PATH | O_DIRECTORY);
        buf[start - 1] = saved_start;
      }
      if (parent < 0) return -1;
      const char* name = buf + start;
      int rc;
      if (last && create == 'f') {
        rc = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (rc >= 0) close(rc);
      } else {
        rc = mkdirat(parent, name, 0755);
      }
      int saved_errno = errno;
      close(parent);
      if (rc < 0 && saved_errno != EEXIST) {
        errno = saved_errno;
        return -1;
      }
    } else {
      return -1;
    }
    buf[i] = saved;
    while (i < n && buf[i] == '/') i++;
  }
  return openat2_in_root(root_fd, path, O_PATH);
}

void fd_path(char* out, size_t cap, int fd) {
  out[0] = '\0';
  append(out, cap, "/proc/self/fd/");
  append_int(out, cap, fd);
}

// Flags that an unprivileged bind remount must keep, or the kernel answers EPERM.
unsigned long locked_flags(const char* path) {
  struct statvfs s;
  if (statvfs(path, &s) != 0) return 0;
  unsigned long f = 0;
  if (s.f_flag & ST_NOSUID) f |= MS_NOSUID;
  if (s.f_flag & ST_NODEV) f |= MS_NODEV;
  if (s.f_flag & ST_NOEXEC) f |= MS_NOEXEC;
  if (s.f_flag & ST_NOATIME) f |= MS_NOATIME;
  if (s.f_flag & ST_NODIRATIME) f |= MS_NODIRATIME;
  if (s.f_flag & ST_RELATIME) f |= MS_RELATIME;
  return f;
}

void run_pre_pivot(const ChildArgs& a, int root_fd) {
  char target[64];
  for (const PlanOp& op : a.plan->pre_pivot) {
    switch (op.kind) {
      case PlanOp::Mount: {
        const char* create = op.fields[5].c_str();
        int fd = resolve_create(root_fd, op.fields[1].c_str(), create[0]);
        if (fd < 0) child_fail(a.error_fd, 0, errno, "mount target ", op.fields[1].c_str());
        fd_path(target, sizeof target, fd);
        const char* data = op.fields[4].empty() ? nullptr : op.fields[4].c_str();
        if (mount(op.fields[0].c_str(), target, op.fields[2].c_str(), op.flags, data) != 0) {
          int err = errno;
          // mqueue is optional: some kernels are built without it.
          if (op.fields[2] != "mqueue") child_fail(a.error_fd, 0, err, "mount ", op.fields[1].c_str());
        }
        close(fd);
        break;
      }
      case PlanOp::BindHost: {
        const char* create = op.fields[3].c_str();
        int fd = resolve_create(root_fd, op.fields[1].c_str(), create[0]);
        if (fd < 0) child_fail(a.error_fd, 0, errno, "bind mount target ", op.fields[1].c_str());
        fd_path(target, sizeof target, fd);
        unsigned long bind = MS_BIND | (op.recursive ? MS_REC : 0);
        if (mount(op.fields[0].c_str(), target, nullptr, bind, nullptr) != 0)
          child_fail(a.error_fd, 0, errno, "bind mount ", op.fields[0].c_str());
        if (op.flags) {
          // The new mount sits on the same fd path now; remount it with the extra flags.
          int mfd = openat2_in_root(root_fd, op.fields[1].c_str(), O_PATH);
          if (mfd < 0) child_fail(a.error_fd, 0, errno, "reopen bind target ", op.fields[1].c_str());
          char mpath[64];
          fd_path(mpath, sizeof mpath, mfd);
          unsigned long flags = MS_REMOUNT | MS_BIND | op.flags | locked_flags(mpath);
          if (mount(nullptr, mpath, nullptr, flags, nullptr) != 0)
            child_fail(a.error_fd, 0, errno, "remount ", op.fields[1].c_str());
          close(mfd);
        }
        close(fd);
        break;
      }
      case PlanOp::BindFromNs: {
        // mount(MS_BIND) refuses a source in another mount namespace: enter that namespace,
        // clone the mount there as a detached tree, come back and attach it.
        int fd = resolve_create(root_fd, op.fields[2].c_str(), 'd');
        if (fd < 0) child_fail(a.error_fd, 0, errno, "mount target ", op.fields[2].c_str());
        int own = open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
        if (own < 0) child_fail(a.error_fd, 0, errno, "open own mount namespace");
        int other = open(op.fields[0].c_str(), O_RDONLY | O_CLOEXEC);
        if (other < 0) child_fail(a.error_fd, 0, errno, "open ", op.fields[0].c_str());
        if (setns(other, CLONE_NEWNS) != 0) child_fail(a.error_fd, 0, errno, "join ", op.fields[0].c_str());
        int tree = static_cast<int>(syscall(SYS_open_tree, AT_FDCWD, op.fields[1].c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
        int tree_errno = errno;
        if (setns(own, CLONE_NEWNS) != 0) child_fail(a.error_fd, 0, errno, "return to own mount namespace");
        if (tree < 0) child_fail(a.error_fd, 0, tree_errno, "clone mount ", op.fields[1].c_str());
        if (syscall(SYS_move_mount, tree, "", fd, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0)
          child_fail(a.error_fd, 0, errno, "attach mount ", op.fields[2].c_str());
        close(tree);
        close(other);
        close(own);
        close(fd);
        break;
      }
      case PlanOp::Symlink: {
        // Create the link in its parent directory, resolved inside the root.
        char parent[4096];
        parent[0] = '\0';
        append(parent, sizeof parent, op.fields[1].c_str());
        size_t n = str_len(parent);
        while (n > 0 && parent[n - 1] != '/') n--;
        const char* name = op.fields[1].c_str() + n;
        parent[n] = '\0';
        int pfd = resolve_create(root_fd, n ? parent : "/", 'd');
        if (pfd < 0) child_fail(a.error_fd, 0, errno, "symlink parent ", op.fields[1].c_str());
        if (symlinkat(op.fields[0].c_str(), pfd, name) != 0 && errno != EEXIST)
          child_fail(a.error_fd, 0, errno, "symlink ", op.fields[1].c_str());
        close(pfd);
        break;
      }
      case PlanOp::Mkdir: {
        int fd = resolve_create(root_fd, op.fields[0].c_str(), 'd');
        if (fd < 0) child_fail(a.error_fd, 0, errno, "mkdir ", op.fields[0].c_str());
        close(fd);
        break;
      }
      default:
        break;
    }
  }
}

void run_post_pivot(const ChildArgs& a) {
  for (const PlanOp& op : a.plan->post_pivot) {
    const char* path = op.fields[0].c_str();
    if (op.kind == PlanOp::Sysctl) {
      // The container's own namespaces' settings (--sysctl), before /proc/sys goes read-only.
      int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
      if (fd < 0) child_fail(a.error_fd, 0, errno, "open ", path);
      const std::string& value = op.fields[1];
      if (write(fd, value.data(), value.size()) != static_cast<ssize_t>(value.size()))
        child_fail(a.error_fd, 0, errno, "write ", path);
      close(fd);
      continue;
    }
    struct stat st;
    if (lstat(path, &st) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue;  // masked paths differ per kernel
      child_fail(a.error_fd, 0, errno, "stat ", path);
    }
    if (S_ISLNK(st.st_mode)) continue;
    if (op.kind == PlanOp::Mask) {
      int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0")
                                   : mount("/dev/null", path, nullptr, MS_BIND, nullptr);
      if (rc != 0) child_fail(a.error_fd, 0, errno, "mask ", path);
    } else if (op.kind == PlanOp::ReadOnly) {
      if (mount(path, path, nullptr, MS_BIND | MS_REC, nullptr) != 0)
        child_fail(a.error_fd, 0, errno, "bind read-only path ", path);
      unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(path);
      if (mount(nullptr, path, nullptr, flags, nullptr) != 0)
        child_fail(a.error_fd, 0, errno, "remount read-only ", path);
    }
  }
}

// Sends fd over the socket with SCM_RIGHTS.
bool send_fd(int sock, int fd) { return send_with_fd(sock, "T", 1, fd); }

void setup_tty(const ChildArgs& a) {
  const LaunchPlan& p = *a.plan;
  int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) child_fail(a.error_fd, 0, errno, "open /dev/ptmx");
  int unlock = 0;
  if (ioctl(master, TIOCSPTLCK, &unlock) != 0) child_fail(a.error_fd, 0, errno, "unlock pty");
  if (p.rows && p.cols) {
    struct winsize ws;
    memset(&ws, 0, sizeof ws);
    ws.ws_row = p.rows;
    ws.ws_col = p.cols;
    ioctl(master, TIOCSWINSZ, &ws);
  }
  int slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY);
  if (slave < 0) child_fail(a.error_fd, 0, errno, "open pty peer");
  if (p.have_user && p.uid != 0) {
    if (fchown(slave, p.uid, static_cast<gid_t>(-1)) != 0) child_fail(a.error_fd, 0, errno, "chown pty");
  }
  if (!send_fd(a.socket_fd, master)) child_fail(a.error_fd, 0, errno, "send pty to parent");
  close(master);
  if (setsid() < 0) child_fail(a.error_fd, 0, errno, "setsid");
  if (ioctl(slave, TIOCSCTTY, 0) != 0) child_fail(a.error_fd, 0, errno, "set controlling terminal");
  for (int i = 0; i < 3; i++)
    if (dup2(slave, i) < 0) child_fail(a.error_fd, 0, errno, "dup pty");
  if (slave > 2) close(slave);
}

// Looks the command up in PATH and execs it; returns only on failure.
[[noreturn]] void exec_command(const ChildArgs& a) {
  const char* cmd = a.argv[0];
  bool has_slash = false;
  for (const char* c = cmd; *c; c++)
    if (*c == '/') has_slash = true;
  if (cmd[0] == '\0') child_fail(a.error_fd, 1, ENOENT, "exec: \"\": executable file not found in $PATH");
  if (has_slash) {
    execve(cmd, a.argv, a.envp);
    int err = errno;
    child_fail(a.error_fd, err == ENOENT || err == ENOTDIR ? 1 : 2, err, "exec ", cmd);
  }
  const char* path = a.plan->path_env.c_str();
  int denied = 0;
  char full[4096];
  const char* seg = path;
  while (true) {
    const char* e = seg;
    while (*e && *e != ':') e++;
    size_t len = static_cast<size_t>(e - seg);
    if (len + str_len(cmd) + 2 < sizeof full) {
      memcpy(full, seg, len);
      full[len] = '\0';
      if (len == 0) append(full, sizeof full, ".");
      append(full, sizeof full, "/");
      append(full, sizeof full, cmd);
      execve(full, a.argv, a.envp);
      int err = errno;
      if (err == EACCES) {
        denied = err;
      } else if (err != ENOENT && err != ENOTDIR && err != ENAMETOOLONG) {
        child_fail(a.error_fd, 2, err, "exec ", full);
      }
    }
    if (!*e) break;
    seg = e + 1;
  }
  if (denied) child_fail(a.error_fd, 2, denied, "exec ", cmd);
  char msg[600];
  msg[0] = '\0';
  append(msg, sizeof msg, "exec: \"");
  append(msg, sizeof msg, cmd);
  append(msg, sizeof msg, "\": executable file not found in $PATH");
  child_fail(a.error_fd, 1, 0, msg);
}

// Whether fd (a namespace file opened from path, ".../ns/NAME") is the caller's own NAME
// namespace.
bool is_own_namespace(int fd, const char* path) {
  const char* name = path;
  for (const char* c = path; *c; c++)
    if (*c == '/') name = c + 1;
  char own[64];
  own[0] = '\0';
  append(own, sizeof own, "/proc/self/ns/");
  append(own, sizeof own, name);
  struct stat a, b;
  return fstat(fd, &a) == 0 && stat(own, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int child_main(void* arg) {
  const ChildArgs& a = *static_cast<ChildArgs*>(arg);
  const LaunchPlan& p = *a.plan;

  // Node ignores SIGPIPE and blocks some signals: give the command the defaults.
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int s = 1; s < 65; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &dfl, nullptr);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);

  for (int fd : a.parent_fds)
    if (fd >= 0) close(fd);
  if (p.die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);

  // Wait until the parent has written uid_map and gid_map; EOF means it gave up.
  char go = 0;
  ssize_t got;
  do {
    got = read(a.sync_fd, &go, 1);
  } while (got < 0 && errno == EINTR);
  if (got != 1) _exit(125);
  if (!p.hold_before_exec) close(a.sync_fd);

  if (!p.join_ns.empty()) {
    // Open every namespace first: after joining the mount namespace /proc is the container's.
    int fds[16];
    bool skip[16];
    size_t n = p.join_ns.size() < 16 ? p.join_ns.size() : 16;
    for (size_t i = 0; i < n; i++) {
      fds[i] = open(p.join_ns[i].c_str(), O_RDONLY | O_CLOEXEC);
      if (fds[i] < 0) child_fail(a.error_fd, 0, errno, "open ", p.join_ns[i].c_str());
      // A namespace the container shares with the host (--network, --pid, --ipc, --uts host) is
      // ours already, and setns into it would need capabilities over the host's namespace.
      skip[i] = is_own_namespace(fds[i], p.join_ns[i].c_str());
    }
    for (size_t i = 0; i < n; i++) {
      if (!skip[i] && setns(fds[i], 0) != 0) child_fail(a.error_fd, 0, errno, "join ", p.join_ns[i].c_str());
      close(fds[i]);
    }
    if (setresgid(0, 0, 0) != 0) child_fail(a.error_fd, 0, errno, "setresgid 0");
    if (setresuid(0, 0, 0) != 0) child_fail(a.error_fd, 0, errno, "setresuid 0");
    // setns(pid) applies to children only: the command is a new process, made a sibling of this
    // one (CLONE_PARENT) so the caller waits for it directly.
    pid_t cmd = static_cast<pid_t>(syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0));
    if (cmd < 0) child_fail(a.error_fd, 0, errno, "clone into the container's pid namespace");
    if (cmd > 0) {
      ChildError e;
      memset(&e, 0, sizeof e);
      e.kind = -1;
      e.err = cmd;
      ssize_t unused = write(a.error_fd, &e, sizeof e);
      (void)unused;
      _exit(0);
    }
    if (p.die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);
  }

  // In the holder's namespace the caller's ids are 0 already (it maps them so).
  if ((p.clone_flags & CLONE_NEWUSER) && p.become_root) {
    if (setresgid(0, 0, 0) != 0) child_fail(a.error_fd, 0, errno, "setresgid 0");
    if (setresuid(0, 0, 0) != 0) child_fail(a.error_fd, 0, errno, "setresuid 0");
  }
  if (p.unshare_cgroup && unshare(CLONE_NEWCGROUP) != 0) child_fail(a.error_fd, 0, errno, "new cgroup namespace");
  if (!p.hostname.empty() && (p.clone_flags & CLONE_NEWUTS)) {
    if (sethostname(p.hostname.c_str(), p.hostname.size()) != 0)
      child_fail(a.error_fd, 0, errno, "sethostname");
  }
  // The syscall, not /proc/sys/kernel/domainname: that file belongs to the initial user
  // namespace's root, while setdomainname(2) asks for CAP_SYS_ADMIN over the UTS namespace only.
  if (!p.domainname.empty() && (p.clone_flags & CLONE_NEWUTS)) {
    if (setdomainname(p.domainname.c_str(), p.domainname.size()) != 0)
      child_fail(a.error_fd, 0, errno, "setdomainname");
  }
  if (p.loopback_up && (p.clone_flags & CLONE_NEWNET)) {
    // A new network namespace starts with lo down; Docker's containers have it up.
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) != 0) child_fail(a.error_fd, 0, errno, "get flags of lo");
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) child_fail(a.error_fd, 0, errno, "bring lo up");
    close(s);
    enlarge_loopback_segments();
  }
  if (p.clone_flags & CLONE_NEWNS) {
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      child_fail(a.error_fd, 0, errno, "make mounts private");
  }

  if (!p.rootfs.empty()) {
    const char* rootfs = p.rootfs.c_str();
    if (!p.root_cwd.empty() && chdir(p.root_cwd.c_str()) != 0)
      child_fail(a.error_fd, 0, errno, "chdir to ", p.root_cwd.c_str());
    if (!p.root_source.empty()) {
      const char* data = p.root_data.empty() ? nullptr : p.root_data.c_str();
      if (mount(p.root_source.c_str(), rootfs, p.root_fstype.c_str(), p.root_flags, data) != 0)
        child_fail(a.error_fd, 0, errno, "mount root filesystem (", p.root_fstype.c_str());
    } else if (mount(rootfs, rootfs, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
      child_fail(a.error_fd, 0, errno, "bind root filesystem");
    }
    int root_fd = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0) child_fail(a.error_fd, 0, errno, "open root filesystem");
    run_pre_pivot(a, root_fd);
    if (fchdir(root_fd) != 0) child_fail(a.error_fd, 0, errno, "chdir to root");
    close(root_fd);
    if (syscall(SYS_pivot_root, ".", ".") != 0) child_fail(a.error_fd, 0, errno, "pivot_root");
    if (umount2(".", MNT_DETACH) != 0) child_fail(a.error_fd, 0, errno, "detach old root");
    if (chdir("/") != 0) child_fail(a.error_fd, 0, errno, "chdir /");
    run_post_pivot(a);
    if (p.root_readonly) {
      unsigned long flags = MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags("/");
      if (mount(nullptr, "/", nullptr, flags, nullptr) != 0)
        child_fail(a.error_fd, 0, errno, "remount root read-only");
    }
  }

  // Standard streams: host fds chosen by the parent, the container's /dev/null, or a pty.
  for (int i = 0; i < 3; i++) {
    if (p.stdio[i] >= 0 && p.stdio[i] != i && dup2(p.stdio[i], i) < 0)
      child_fail(a.error_fd, 0, errno, "set up standard streams");
  }
  if (p.stdin_null) {
    int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (nul < 0 || dup2(nul, 0) < 0) child_fail(a.error_fd, 0, errno, "open /dev/null");
    close(nul);
  }
  if (p.tty) setup_tty(a);
  // Node opens 0-2 close-on-exec; the command must keep them.
  for (int i = 0; i < 3; i++) fcntl(i, F_SETFD, 0);

  if (p.hold_before_exec) {
    // The parent's go for the command; end of file means it gave up (its helper failed).
    do {
      got = read(a.sync_fd, &go, 1);
    } while (got < 0 && errno == EINTR);
    if (got != 1) child_fail(a.error_fd, 0, 0, "start cancelled");
    close(a.sync_fd);
  }

  // No host fd may survive into the container (CVE-2024-21626): close all but the error pipe.
  if (a.error_fd > 3) syscall(SYS_close_range, 3, a.error_fd - 1, 0);
  syscall(SYS_close_range, a.error_fd + 1, ~0U, 0);

  if (!p.cwd.empty() && p.create_cwd) {
    // After pivot_root "/" is the container's root, so this stays inside it.
    int root_fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd = root_fd < 0 ? -1 : resolve_create(root_fd, p.cwd.c_str(), 'd');
    if (fd < 0) child_fail(a.error_fd, 0, errno, "create working directory ", p.cwd.c_str());
    close(fd);
    close(root_fd);
  }

  // runc's order: limits and no_new_privs; without no_new_privs the filter needs CAP_SYS_ADMIN,
  // so it goes in before the capabilities are dropped, otherwise as late as possible.
  const SecurityPlan& sec = p.security;
  const char* step = nullptr;
  int err = apply_rlimits(sec, &step);
  if (err) child_fail(a.error_fd, 0, err, step);
  if (p.no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    child_fail(a.error_fd, 0, errno, "set no_new_privs");
  if (!p.no_new_privs && (err = install_seccomp(sec, &step))) child_fail(a.error_fd, 0, err, step);
  if ((err = drop_bounding_set(sec, &step))) child_fail(a.error_fd, 0, err, step);
  if (p.have_user) {
    if (sec.caps && (err = keep_capabilities(true, &step))) child_fail(a.error_fd, 0, err, step);
    if (p.set_groups && setgroups(p.groups.size(), p.groups.data()) != 0)
      child_fail(a.error_fd, 0, errno, "setgroups");
    if (setresgid(p.gid, p.gid, p.gid) != 0) child_fail(a.error_fd, 0, errno, "setresgid");
    if (setresuid(p.uid, p.uid, p.uid) != 0) child_fail(a.error_fd, 0, errno, "setresuid");
    if (sec.caps && (err = keep_capabilities(false, &step))) child_fail(a.error_fd, 0, err, step);
    // A change of user clears the parent-death signal: set it again (runc does the same).
    if (p.die_with_parent) prctl(PR_SET_PDEATHSIG, SIGKILL);
  }

  if (!p.cwd.empty()) {
    // Resolved from the container's root; magic links such as /proc/self/fd/N are refused.
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
    how.resolve = RESOLVE_NO_MAGICLINKS;
    int fd = static_cast<int>(syscall(SYS_openat2, AT_FDCWD, p.cwd.c_str(), &how, sizeof how));
    if (fd < 0 && (errno == EPERM || errno == ENOSYS) && !sec.seccomp.empty()) {
      // A seccomp profile without openat2 (older Docker profiles): plain chdir is safe here,
      // every fd that could serve as a magic link is closed by now.
      if (chdir(p.cwd.c_str()) != 0) child_fail(a.error_fd, 0, errno, "chdir to ", p.cwd.c_str());
    } else {
      if (fd < 0 || fchdir(fd) != 0) child_fail(a.error_fd, 0, errno, "chdir to ", p.cwd.c_str());
      close(fd);
    }
  }
  if ((err = apply_capabilities(sec, &step))) child_fail(a.error_fd, 0, err, step);
  if (p.no_new_privs && (err = install_seccomp(sec, &step))) child_fail(a.error_fd, 0, err, step);
  exec_command(a);
}

}  // namespace

namespace {
// One message over one buffer, with room for one fd (SCM_RIGHTS): what both directions share.
struct FdMessage {
  struct iovec iov;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct msghdr msg;

  FdMessage(void* data, size_t len) {
    iov = {data, len};
    memset(control, 0, sizeof control);
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
  }
  FdMessage(const FdMessage&) = delete;
  FdMessage& operator=(const FdMessage&) = delete;
};
}  // namespace

bool send_with_fd(int sock, const void* data, size_t len, int fd, int flags) {
  FdMessage m(const_cast<void*>(data), len);
  struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &fd, sizeof fd);
  ssize_t n;
  do {
    n = sendmsg(sock, &m.msg, MSG_NOSIGNAL | flags);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(len);
}

int recv_with_fd(int sock, void* buf, size_t cap, ssize_t& got) {
  FdMessage m(buf, cap);
  do {
    got = recvmsg(sock, &m.msg, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got <= 0) return -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&m.msg);
  if (!c || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS || c->cmsg_len < CMSG_LEN(sizeof(int))) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof fd);
  return fd;
}

namespace {
int recv_fd(int sock) {
  char byte;
  ssize_t got;
  return recv_with_fd(sock, &byte, 1, got);
}
}  // namespace

bool resume(Launched& l, bool tty, int& pty_fd, ChildError& error, pid_t* command_pid) {
  // sync_fd -1: the caller has closed it already (a start it cancels); only the outcome is read.
  if (l.sync_fd >= 0) {
    char go = 'G';
    ssize_t w;
    do {
      w = write(l.sync_fd, &go, 1);
    } while (w < 0 && errno == EINTR);
    close(l.sync_fd);
  }
  l.sync_fd = -1;
  pty_fd = -1;
  if (tty && l.socket_fd >= 0) pty_fd = recv_fd(l.socket_fd);
  if (l.socket_fd >= 0) close(l.socket_fd);
  l.socket_fd = -1;
  if (command_pid) *command_pid = l.pid;
  size_t got = 0;
  for (;;) {
    memset(&error, 0, sizeof error);
    got = 0;
    while (got < sizeof error) {
      ssize_t n = read(l.error_fd, reinterpret_cast<char*>(&error) + got, sizeof error - got);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    if (got == sizeof error && error.kind == -1) {
      if (command_pid) *command_pid = error.err;
      continue;
    }
    break;
  }
  close(l.error_fd);
  l.error_fd = -1;
  if (got == 0) return true;
  if (pty_fd >= 0) close(pty_fd);
  pty_fd = -1;
  if (got != sizeof error) {
    memset(&error, 0, sizeof error);
    memcpy(error.step, "child reported a truncated error", 33);
  }
  error.step[sizeof error.step - 1] = '\0';
  return false;
}

// ---------------------------------------------------------------------------------------------
// Launches in the holder's user namespace. An intermediate process joins the user namespace of
// tsrun-netns, clones the child there with CLONE_PARENT (so it is the caller's own child, waited
// for and killed with it like any other), reports the child's pid and exits. Joining needs no
// setuid helper: the holder's namespace belongs to the calling user. Async-signal-safe only, as
// in the child.

namespace {

struct NestReport {
  int32_t pid;   // the child, or 0 on failure
  int32_t err;
  char step[248];
};

struct NestArgs {
  ChildArgs* child;
  char* child_stack_top;
  int report_fd;
  int report_read_fd;
};

[[noreturn]] void nest_fail(int fd, int err, const char* step) {
  NestReport r;
  memset(&r, 0, sizeof r);
  r.err = err;
  append(r.step, sizeof r.step, step);
  ssize_t unused = write(fd, &r, sizeof r);
  (void)unused;
  _exit(1);
}

int nest_main(void* arg) {
  NestArgs& n = *static_cast<NestArgs*>(arg);
  const LaunchPlan& p = *n.child->plan;
  close(n.report_read_fd);
  for (int fd : n.child->parent_fds)
    if (fd >= 0) close(fd);
  int ns = open(p.nest_userns.c_str(), O_RDONLY | O_CLOEXEC);
  if (ns < 0) nest_fail(n.report_fd, errno, "open the holder's user namespace");
  // Opened as the caller, before the user namespace changes: the container's processes are
  // the caller's (or its subordinate ids') in the host's view.
  int shared[8];
  size_t shares = p.share_ns.size() < 8 ? p.share_ns.size() : 8;
  for (size_t i = 0; i < shares; i++) {
    shared[i] = open(p.share_ns[i].c_str(), O_RDONLY | O_CLOEXEC);
    if (shared[i] < 0) nest_fail(n.report_fd, errno, "open the namespace to share (is the container running?)");
  }
  if (setns(ns, CLONE_NEWUSER) != 0) nest_fail(n.report_fd, errno, "join the holder's user namespace");
  close(ns);
  // setns(pid) applies to the children cloned from now on: the child starts in that namespace.
  for (size_t i = 0; i < shares; i++) {
    if (setns(shared[i], 0) != 0) nest_fail(n.report_fd, errno, "join the namespace to share");
    close(shared[i]);
  }
  pid_t pid = static_cast<pid_t>(clone(child_main, n.child_stack_top, static_cast<int>(p.clone_flags) | CLONE_PARENT, n.child));
  if (pid < 0) nest_fail(n.report_fd, errno, "clone in the holder's user namespace");
  NestReport r;
  memset(&r, 0, sizeof r);
  r.pid = pid;
  ssize_t unused = write(n.report_fd, &r, sizeof r);
  (void)unused;
  _exit(0);
}

// Runs the intermediate; returns the child's pid or -1 with what went wrong.
pid_t clone_nested(ChildArgs& args, char* stacks, size_t stack_size, std::string& error) {
  int report[2];
  if (pipe2(report, O_CLOEXEC) != 0) {
    error = std::string("pipe: ") + strerror(errno);
    return -1;
  }
  NestArgs nest{&args, stacks + 2 * stack_size, report[1], report[0]};
  // The intermediate shares our memory (CLONE_VM) and we wait until it is gone (CLONE_VFORK),
  // as posix_spawn does: copying Node's page tables twice (for it, then for the child) cost
  // more than the setuid tools this path saves. setns(CLONE_NEWUSER) allows a shared mm, not a
  // shared thread group or fs. Signals stay blocked meanwhile: Node's handlers must never run on
  // its stack; the child unblocks them itself.
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  pid_t mid = clone(nest_main, stacks + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &nest);
  int clone_errno = errno;
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
  close(report[1]);
  if (mid < 0) {
    close(report[0]);
    error = std::string("clone: ") + strerror(clone_errno);
    return -1;
  }
  NestReport r;
  memset(&r, 0, sizeof r);
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t n = read(report[0], reinterpret_cast<char*>(&r) + got, sizeof r - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  close(report[0]);
  int status;
  while (waitpid(mid, &status, 0) < 0 && errno == EINTR) {
  }
  if (got != sizeof r || r.pid <= 0) {
    r.step[sizeof r.step - 1] = '\0';
    error = got == sizeof r ? std::string(r.step) + ": " + strerror(r.err) : "the nested launcher died";
    return -1;
  }
  return r.pid;
}

}  // namespace

std::string launch(const LaunchPlan& plan, Launched& out) {
  // Everything the child reads is prepared here, before clone.
  std::vector<char*> argv, envp;
  for (const auto& s : plan.argv) argv.push_back(const_cast<char*>(s.c_str()));
  argv.push_back(nullptr);
  for (const auto& s : plan.env) envp.push_back(const_cast<char*>(s.c_str()));
  envp.push_back(nullptr);

  int sync_pipe[2] = {-1, -1}, error_pipe[2] = {-1, -1}, sock[2] = {-1, -1};
  auto close_all = [&]() {
    for (int fd : {sync_pipe[0], sync_pipe[1], error_pipe[0], error_pipe[1], sock[0], sock[1]})
      if (fd >= 0) close(fd);
  };
  if (pipe2(sync_pipe, O_CLOEXEC) != 0 || pipe2(error_pipe, O_CLOEXEC) != 0) {
    int err = errno;
    close_all();
    return std::string("pipe: ") + strerror(err);
  }
  if (plan.tty && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sock) != 0) {
    int err = errno;
    close_all();
    return std::string("socketpair: ") + strerror(err);
  }
  ChildArgs args{&plan, argv.data(), envp.data(), sync_pipe[0], error_pipe[1], sock[1], {sync_pipe[1], error_pipe[0], sock[0]}};

  const size_t stack_size = 1 << 20;
  // A nested launch needs a second stack: the intermediate's, then the child's.
  const size_t stacks = plan.nest_userns.empty() ? 1 : 2;
  void* stack = mmap(nullptr, stack_size * stacks, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    int err = errno;
    close_all();
    return std::string("mmap child stack: ") + strerror(err);
  }
  int pidfd = -1;
  pid_t pid;
  int clone_errno = 0;
  std::string nest_error;
  if (!plan.nest_userns.empty()) {
    pid = clone_nested(args, static_cast<char*>(stack), stack_size, nest_error);
    if (pid > 0) pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  } else {
    pid = clone(child_main, static_cast<char*>(stack) + stack_size,
                static_cast<int>(plan.clone_flags) | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
    clone_errno = errno;
  }
  // Without CLONE_VM the child has its own copy of the stack.
  munmap(stack, stack_size * stacks);
  if (pid < 0) {
    close_all();
    return nest_error.empty() ? std::string("clone: ") + strerror(clone_errno) : nest_error;
  }
  close(sync_pipe[0]);
  close(error_pipe[1]);
  if (sock[1] >= 0) close(sock[1]);
  out.pid = pid;
  out.pidfd = pidfd;
  out.sync_fd = sync_pipe[1];
  out.error_fd = error_pipe[0];
  out.socket_fd = sock[0];
  return "";
}

}  // namespace tsrun
