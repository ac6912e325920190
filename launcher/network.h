// Container networking through rtnetlink (libnl-route-3), never by running `ip`.
// Each call works in the network namespace of the calling thread.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace stasis::launcher::net {

void set_link_up(const std::string& ifname);
// The same for lo of the caller's network namespace, in one netlink request.
void set_loopback_up();
// A veth pair: host_ifname stays here, peer_ifname goes into the network namespace of peer_pid.
void create_veth(const std::string& host_ifname, const std::string& peer_ifname, pid_t peer_pid);
// A bridge link (down, no address).
void create_bridge(const std::string& ifname);
// Makes ifname a port of the bridge master.
void set_master(const std::string& ifname, const std::string& master);
// Sets the MAC address of ifname (a link that is down).
void set_mac(const std::string& ifname, const unsigned char (&mac)[6]);
// cidr: "10.213.0.2/24".
void add_address(const std::string& ifname, const std::string& cidr);
// Default route via gateway (an address, "10.213.0.1"), through ifname.
void add_default_route(const std::string& ifname, const std::string& gateway);
bool link_exists(const std::string& ifname);
// Returns false when there was no such link.
bool delete_link(const std::string& ifname);
// Names of every link in this namespace ("lo", "eth0", ...).
std::vector<std::string> link_names();
// The first link here with an IPv4 address whose subnet overlaps cidr's ("10.213.0.1/24"), as
// "NAME (ADDRESS/PREFIX)", or "" when none has.
std::string link_in_subnet(const std::string& cidr);

}  // namespace stasis::launcher::net
