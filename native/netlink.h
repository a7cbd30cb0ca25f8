// A small rtnetlink client: just what user-defined networks need (a bridge, veth pairs, IPv4
// addresses, links up and down), without iproute2. Used by tsrun-netns, the holder of the
// user-defined networks' namespaces.
#pragma once

#include <stdint.h>

#include <string>

namespace tsrun {

class Netlink {
 public:
  // A NETLINK_ROUTE socket in the caller's current network namespace (a socket keeps the
  // namespace it was created in, whatever the process joins later).
  Netlink();
  ~Netlink();
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;
  bool ok() const { return fd_ >= 0; }

  // Each returns 0 or an errno value; what() describes the last failure.
  int link_index(const std::string& name, int& index);
  int create_bridge(const std::string& name, int mtu);  // EEXIST when it exists already
  // A veth pair: host_name here, attached to the bridge master_index and up; the peer created
  // directly in the network namespace netns_fd as peer_name, with the MAC address mac (6 bytes,
  // or null) and the MTU.
  int create_veth(const std::string& host_name, const std::string& peer_name, int netns_fd, int master_index, int mtu,
                  const unsigned char* mac);
  int set_up(int index);
  int add_ipv4(int index, uint32_t address_be, int prefix);
  int delete_link(const std::string& name);
  const std::string& what() const { return what_; }

 private:
  int request(void* msg, size_t len, const char* step, int* found = nullptr);
  int fd_ = -1;
  uint32_t seq_ = 0;
  std::string what_;
};

// "10.89.0.5/24" -> address (network byte order) and prefix; false when malformed.
bool parse_cidr(const std::string& text, uint32_t& address_be, int& prefix);
// "02:42:0a:59:00:05" -> 6 bytes; false when malformed.
bool parse_mac(const std::string& text, unsigned char mac[6]);

}  // namespace tsrun
