#include "security.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif

namespace tsrun {

namespace {

bool parse_u64(const std::string& s, uint64_t& out, int base) {
  if (s.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long long v = strtoull(s.c_str(), &end, base);
  if (errno != 0 || !end || *end != '\0') return false;
  out = v;
  return true;
}

bool parse_limit(const std::string& s, rlim_t& out) {
  if (s == "unlimited" || s == "-1") {
    out = RLIM_INFINITY;
    return true;
  }
  uint64_t v = 0;
  if (!parse_u64(s, v, 10)) return false;
  out = static_cast<rlim_t>(v);
  return true;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

bool decode_security(const std::string& key, const std::vector<std::string>& f, SecurityPlan& plan,
                     std::string& err) {
  err.clear();
  if (key == "caps") {
    // bounding, effective, permitted, inheritable, ambient: hexadecimal masks.
    uint64_t* sets[] = {&plan.bounding, &plan.effective, &plan.permitted, &plan.inheritable, &plan.ambient};
    if (f.size() != 5) {
      err = "bad caps";
      return true;
    }
    for (size_t i = 0; i < 5; i++) {
      if (!parse_u64(f[i], *sets[i], 16)) {
        err = "bad capability mask " + f[i];
        return true;
      }
    }
    plan.caps = true;
    return true;
  }
  if (key == "rlimit") {
    uint64_t resource = 0;
    SecurityPlan::Rlimit r;
    if (f.size() != 3 || !parse_u64(f[0], resource, 10) || resource >= RLIM_NLIMITS ||
        !parse_limit(f[1], r.value.rlim_cur) || !parse_limit(f[2], r.value.rlim_max) ||
        r.value.rlim_cur > r.value.rlim_max) {
      err = "bad rlimit";
      return true;
    }
    r.resource = static_cast<int>(resource);
    plan.rlimits.push_back(r);
    return true;
  }
  if (key == "seccomp") {
    // flags, then the program as hexadecimal bytes (8 bytes per instruction).
    uint64_t flags = 0;
    if (f.size() != 2 || !parse_u64(f[0], flags, 10)) {
      err = "bad seccomp";
      return true;
    }
    const std::string& hex = f[1];
    size_t bytes = hex.size() / 2;
    if (hex.size() % 2 != 0 || bytes == 0 || bytes % sizeof(struct sock_filter) != 0 ||
        bytes / sizeof(struct sock_filter) > BPF_MAXINSNS) {
      err = "bad seccomp program length";
      return true;
    }
    plan.seccomp.resize(bytes);
    for (size_t i = 0; i < bytes; i++) {
      int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
      if (hi < 0 || lo < 0) {
        err = "bad seccomp program";
        return true;
      }
      plan.seccomp[i] = static_cast<unsigned char>(hi * 16 + lo);
    }
    plan.seccomp_flags = static_cast<unsigned>(flags);
    return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Child side: async-signal-safe only.

int apply_rlimits(const SecurityPlan& plan, const char** step) {
  for (const auto& r : plan.rlimits) {
    if (setrlimit(static_cast<__rlimit_resource>(r.resource), &r.value) != 0) {
      *step = "set resource limit (--ulimit)";
      return errno;
    }
  }
  return 0;
}

int drop_bounding_set(const SecurityPlan& plan, const char** step) {
  if (!plan.caps) return 0;
  for (int cap = 0; cap < 64; cap++) {
    if (plan.bounding & (1ULL << cap)) continue;
    if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
      if (errno == EINVAL) break;  // past the last capability this kernel knows
      *step = "drop capabilities from the bounding set";
      return errno;
    }
  }
  return 0;
}

int keep_capabilities(bool keep, const char** step) {
  if (prctl(PR_SET_KEEPCAPS, keep ? 1 : 0, 0, 0, 0) != 0) {
    *step = "set keep-capabilities";
    return errno;
  }
  return 0;
}

int apply_capabilities(const SecurityPlan& plan, const char** step) {
  if (!plan.caps) return 0;
  struct __user_cap_header_struct header;
  memset(&header, 0, sizeof header);
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  for (int i = 0; i < 2; i++) {
    data[i].effective = static_cast<uint32_t>(plan.effective >> (32 * i));
    data[i].permitted = static_cast<uint32_t>(plan.permitted >> (32 * i));
    data[i].inheritable = static_cast<uint32_t>(plan.inheritable >> (32 * i));
  }
  if (syscall(SYS_capset, &header, data) != 0) {
    *step = "set capabilities";
    return errno;
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    *step = "clear ambient capabilities";
    return errno;
  }
  for (int cap = 0; cap < 64; cap++) {
    if (!(plan.ambient & (1ULL << cap))) continue;
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) {
      *step = "raise ambient capability";
      return errno;
    }
  }
  return 0;
}

int install_seccomp(const SecurityPlan& plan, const char** step) {
  if (plan.seccomp.empty()) return 0;
  struct sock_fprog prog;
  prog.len = static_cast<unsigned short>(plan.seccomp.size() / sizeof(struct sock_filter));
  prog.filter = reinterpret_cast<struct sock_filter*>(const_cast<unsigned char*>(plan.seccomp.data()));
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, plan.seccomp_flags, &prog) != 0) {
    *step = "install the seccomp filter";
    return errno;
  }
  return 0;
}

}  // namespace tsrun
