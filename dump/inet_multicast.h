// The multicast groups a UDP socket has joined. No call lists a socket's memberships, but one
// reads a membership back when asked for its group and interface (getsockopt MCAST_MSFILTER,
// EADDRNOTAVAIL when the socket is no member): so each group some socket joined on some
// interface of the namespace (/proc/PID/net/igmp and igmp6, which count them per interface) is
// asked for, with its source filter.
#pragma once

#include <sys/types.h>

#include <google/protobuf/repeated_ptr_field.h>

#include "inet_socket.pb.h"

namespace stasis::dump {

// s: our copy of (pid, fd), a UDP socket of family AF_INET or AF_INET6 (which may also hold
// IPv4 groups, joined through IPPROTO_IP).
void read_multicast_memberships(int s, int family, pid_t pid, int fd,
                                google::protobuf::RepeatedPtrField<pb::MulticastMembership>& out);

}  // namespace stasis::dump
