// Confinement of a container process: capabilities, resource limits, no_new_privs and the
// seccomp filter, applied in the child after pivot_root and before exec, in runc's order.
//
// The policy (which capabilities, which syscalls) is decided in TypeScript; the plan carries
// the result (capability masks, rlimit values, a compiled BPF program). Decoding happens in the
// parent; the apply_* functions run in the child and are async-signal-safe: raw syscalls on
// memory prepared before clone, no allocation.
#pragma once

#include <stdint.h>
#include <sys/resource.h>

#include <string>
#include <vector>

namespace tsrun {

struct SecurityPlan {
  // Capability sets as bit masks (bit N = capability N). Without `caps`, capabilities are left
  // as the namespace gives them (helpers such as the storage worker need all of them).
  bool caps = false;
  uint64_t bounding = 0, effective = 0, permitted = 0, inheritable = 0, ambient = 0;

  struct Rlimit {
    int resource;
    struct rlimit value;
  };
  std::vector<Rlimit> rlimits;

  // A classic BPF program (struct sock_filter array) and seccomp(2) filter flags.
  std::vector<unsigned char> seccomp;
  unsigned seccomp_flags = 0;
};

// Parent side. Returns true when key is a security record (then err says what is malformed,
// empty when it decoded).
bool decode_security(const std::string& key, const std::vector<std::string>& fields, SecurityPlan& plan,
                     std::string& err);

// Child side. Each returns 0 or an errno value and points *step at what failed.
int apply_rlimits(const SecurityPlan& plan, const char** step);
// Drops every capability not in the bounding set (needs CAP_SETPCAP, so before the user switch).
int drop_bounding_set(const SecurityPlan& plan, const char** step);
// Keeps the permitted set across setresuid away from root, so that capset can choose it after.
int keep_capabilities(bool keep, const char** step);
// Sets effective, permitted and inheritable, then the ambient set.
int apply_capabilities(const SecurityPlan& plan, const char** step);
int install_seccomp(const SecurityPlan& plan, const char** step);

}  // namespace tsrun
