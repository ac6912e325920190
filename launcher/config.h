// Parsing and validating what `stasis run` was asked for, before anything is created.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "container.pb.h"

namespace stasis::launcher {

// "64M", "1G", "4096", "512k" -> bytes (K/M/G/T, powers of 1024). Throws UsageError.
int64_t parse_size(const std::string& text, const std::string& option);

struct Ipv4Cidr {
  uint32_t address = 0;  // host byte order
  int prefix = 0;
  std::string to_string() const;      // "10.0.0.2/24"
  std::string address_string() const; // "10.0.0.2"
};
// "10.213.0.2/24" -> address and prefix; throws UsageError naming the option.
Ipv4Cidr parse_cidr(const std::string& text, const std::string& option);

// "8080:80", "8080:80/udp" -> a published port; throws UsageError naming the option.
pb::PortMapping parse_port(const std::string& text, const std::string& option);

// "10.88.0.2" -> the address in host byte order; throws UsageError naming the option.
uint32_t parse_ipv4(const std::string& text, const std::string& option);

// "10.88.0.0/16" -> the network (host bits cleared) and prefix (8 to 29); throws UsageError.
Ipv4Cidr parse_cidr_network(const std::string& text, const std::string& option);

// A fresh name ("c-" + 8 hex digits) for a container started without --name.
std::string generate_name();

// Checks every field, fills defaults (hostname, generated veth names, host address) and
// resolves cgroup_driver "auto" to the host's driver. Throws UsageError for bad values.
void validate_config(pb::ContainerConfig& config);

// Where the cgroups of the containers of state root `root` go, below each hierarchy's root: the
// global --cgroup-parent when given (set_cgroup_parent), else "stasis" for the default root
// /run/stasis and "stasis-<8 hex digits of a hash of the root's path>" for any other, so that
// two roots on one machine (two "hosts") may each have a container of the same name.
std::string cgroup_parent_for(const std::filesystem::path& root);
// The global --cgroup-parent, for every container this process starts ("": derive from root).
void set_cgroup_parent(const std::string& parent);
inline constexpr const char* kDefaultStateRoot = "/run/stasis";

// Names of the host-side veth of a container (at most 15 characters).
std::string host_veth_name(const std::string& container_name);

}  // namespace stasis::launcher
