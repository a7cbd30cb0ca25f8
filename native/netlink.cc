#include "netlink.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

namespace tsrun {

namespace {

// One request being built: the header, a fixed part (ifinfomsg or ifaddrmsg), attributes.
struct Message {
  alignas(NLMSG_ALIGNTO) char buf[2048];
  size_t len = 0;

  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buf); }

  Message(uint16_t type, uint16_t flags, const void* fixed, size_t fixed_len) {
    memset(buf, 0, sizeof buf);
    len = NLMSG_LENGTH(fixed_len);
    header()->nlmsg_type = type;
    header()->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
    memcpy(NLMSG_DATA(header()), fixed, fixed_len);
  }

  void append(const void* data, size_t n) {
    memcpy(buf + len, data, n);
    len = NLMSG_ALIGN(len + n);
  }

  void attr(uint16_t type, const void* data, size_t n) {
    rtattr a;
    a.rta_type = type;
    a.rta_len = static_cast<unsigned short>(RTA_LENGTH(n));
    size_t at = len;
    memcpy(buf + at, &a, sizeof a);
    memcpy(buf + at + RTA_LENGTH(0), data, n);
    len = NLMSG_ALIGN(at + RTA_LENGTH(n));
  }
  void attr_str(uint16_t type, const std::string& s) { attr(type, s.c_str(), s.size() + 1); }
  void attr_u32(uint16_t type, uint32_t v) { attr(type, &v, sizeof v); }

  size_t nest_begin(uint16_t type) {
    size_t at = len;
    rtattr a;
    a.rta_type = type;
    a.rta_len = 0;
    memcpy(buf + at, &a, sizeof a);
    len = NLMSG_ALIGN(at + RTA_LENGTH(0));
    return at;
  }
  void nest_end(size_t at) { reinterpret_cast<rtattr*>(buf + at)->rta_len = static_cast<unsigned short>(len - at); }

  void* finish() {
    header()->nlmsg_len = static_cast<uint32_t>(len);
    return buf;
  }
};

ifinfomsg link_message(int index) {
  ifinfomsg ifi;
  memset(&ifi, 0, sizeof ifi);
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  return ifi;
}

}  // namespace

Netlink::Netlink() {
  fd_ = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd_ >= 0) {
    sockaddr_nl sa;
    memset(&sa, 0, sizeof sa);
    sa.nl_family = AF_NETLINK;
    if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
}

Netlink::~Netlink() {
  if (fd_ >= 0) close(fd_);
}

// Sends one request and reads until its ACK (or error). A link in the reply (RTM_GETLINK)
// leaves its index in *found.
int Netlink::request(void* msg, size_t len, const char* step, int* found) {
  nlmsghdr* h = static_cast<nlmsghdr*>(msg);
  h->nlmsg_seq = ++seq_;
  sockaddr_nl to;
  memset(&to, 0, sizeof to);
  to.nl_family = AF_NETLINK;
  if (sendto(fd_, msg, len, 0, reinterpret_cast<sockaddr*>(&to), sizeof to) < 0) {
    int err = errno;
    what_ = std::string(step) + ": " + strerror(err);
    return err;
  }
  alignas(NLMSG_ALIGNTO) char reply[8192];
  for (;;) {
    ssize_t n = recv(fd_, reply, sizeof reply, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      what_ = std::string(step) + ": " + strerror(err);
      return err;
    }
    for (nlmsghdr* r = reinterpret_cast<nlmsghdr*>(reply); NLMSG_OK(r, static_cast<unsigned>(n)); r = NLMSG_NEXT(r, n)) {
      if (r->nlmsg_seq != seq_) continue;
      if (r->nlmsg_type == NLMSG_ERROR) {
        int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
        if (err) what_ = std::string(step) + ": " + strerror(err);
        return err;
      }
      if (r->nlmsg_type == RTM_NEWLINK && found) *found = reinterpret_cast<ifinfomsg*>(NLMSG_DATA(r))->ifi_index;
    }
  }
}

int Netlink::link_index(const std::string& name, int& index) {
  ifinfomsg ifi = link_message(0);
  Message m(RTM_GETLINK, 0, &ifi, sizeof ifi);
  m.attr_str(IFLA_IFNAME, name);
  index = 0;
  int err = request(m.finish(), m.len, ("find interface " + name).c_str(), &index);
  if (err == 0 && index <= 0) {
    what_ = "find interface " + name + ": no index in the reply";
    return ENODEV;
  }
  return err;
}

int Netlink::create_bridge(const std::string& name, int mtu) {
  ifinfomsg ifi = link_message(0);
  Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  m.attr_str(IFLA_IFNAME, name);
  if (mtu > 0) m.attr_u32(IFLA_MTU, static_cast<uint32_t>(mtu));
  size_t info = m.nest_begin(IFLA_LINKINFO);
  m.attr_str(IFLA_INFO_KIND, "bridge");
  m.nest_end(info);
  return request(m.finish(), m.len, ("create bridge " + name).c_str());
}

int Netlink::create_veth(const std::string& host_name, const std::string& peer_name, int netns_fd, int master_index,
                         int mtu, const unsigned char* mac) {
  ifinfomsg ifi = link_message(0);
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  Message m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifi, sizeof ifi);
  if (!host_name.empty()) m.attr_str(IFLA_IFNAME, host_name);
  if (mtu > 0) m.attr_u32(IFLA_MTU, static_cast<uint32_t>(mtu));
  if (master_index > 0) m.attr_u32(IFLA_MASTER, static_cast<uint32_t>(master_index));
  size_t info = m.nest_begin(IFLA_LINKINFO);
  m.attr_str(IFLA_INFO_KIND, "veth");
  size_t data = m.nest_begin(IFLA_INFO_DATA);
  size_t peer = m.nest_begin(VETH_INFO_PEER);
  ifinfomsg peer_ifi = link_message(0);
  m.append(&peer_ifi, sizeof peer_ifi);
  m.attr_str(IFLA_IFNAME, peer_name);
  if (mtu > 0) m.attr_u32(IFLA_MTU, static_cast<uint32_t>(mtu));
  if (mac) m.attr(IFLA_ADDRESS, mac, 6);
  m.attr_u32(IFLA_NET_NS_FD, static_cast<uint32_t>(netns_fd));
  m.nest_end(peer);
  m.nest_end(data);
  m.nest_end(info);
  return request(m.finish(), m.len, ("create veth pair for " + peer_name).c_str());
}

int Netlink::set_up(int index) {
  ifinfomsg ifi = link_message(index);
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  Message m(RTM_NEWLINK, 0, &ifi, sizeof ifi);
  return request(m.finish(), m.len, "bring interface up");
}

int Netlink::add_ipv4(int index, uint32_t address_be, int prefix) {
  ifaddrmsg ifa;
  memset(&ifa, 0, sizeof ifa);
  ifa.ifa_family = AF_INET;
  ifa.ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa.ifa_index = static_cast<unsigned>(index);
  ifa.ifa_scope = RT_SCOPE_UNIVERSE;
  Message m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_REPLACE, &ifa, sizeof ifa);
  m.attr(IFA_LOCAL, &address_be, 4);
  m.attr(IFA_ADDRESS, &address_be, 4);
  if (prefix < 31) {
    uint32_t host_bits = prefix == 0 ? 0xffffffffu : (1u << (32 - prefix)) - 1;
    uint32_t broadcast = htonl(ntohl(address_be) | host_bits);
    m.attr(IFA_BROADCAST, &broadcast, 4);
  }
  return request(m.finish(), m.len, "add address");
}

int Netlink::delete_link(const std::string& name) {
  ifinfomsg ifi = link_message(0);
  Message m(RTM_DELLINK, 0, &ifi, sizeof ifi);
  m.attr_str(IFLA_IFNAME, name);
  return request(m.finish(), m.len, ("delete interface " + name).c_str());
}

bool parse_cidr(const std::string& text, uint32_t& address_be, int& prefix) {
  size_t slash = text.find('/');
  if (slash == std::string::npos) return false;
  in_addr a;
  if (inet_pton(AF_INET, text.substr(0, slash).c_str(), &a) != 1) return false;
  char* end = nullptr;
  long p = strtol(text.c_str() + slash + 1, &end, 10);
  if (!end || *end || p < 0 || p > 32) return false;
  address_be = a.s_addr;
  prefix = static_cast<int>(p);
  return true;
}

bool parse_mac(const std::string& text, unsigned char mac[6]) {
  unsigned v[6];
  char tail;
  if (sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6) return false;
  for (int i = 0; i < 6; i++) mac[i] = static_cast<unsigned char>(v[i]);
  return true;
}

}  // namespace tsrun
