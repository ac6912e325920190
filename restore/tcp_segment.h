// A TCP segment made up as from the peer of a restored connection, delivered to it through a
// raw socket in its network namespace: how a half-closed connection gets the peer's FIN, or
// the acknowledgement of its own, that the peer sent before the dump (TCP_REPAIR brings a
// connection back established only; the kernel has no other way to move it on). The segment
// carries the firewall mark that passes the network lock (launcher/net_lock.h), which still
// holds the connection's real packets; the connection's answer to it is held there too, and
// the peer, which had its FIN acknowledged or our acknowledgement already, never misses it.
#pragma once

#include <cstdint>
#include <string>

#include "inet_socket.pb.h"

namespace stasis::restore {

struct MadeUpSegment {
  uint32_t seq = 0;     // the peer's sequence number: our rcv_nxt
  uint32_t ack = 0;     // what it acknowledges of ours
  bool fin = false;     // FIN (with ACK); else a bare ACK
  uint16_t window = 0;  // as the peer advertised it (already scaled down)
  bool timestamps = false;  // the connection uses them: an option with TSval 0 (which PAWS takes
                            // as "no timestamp yet") and TSecr 0
};

// Sends segment from the peer's address and port (k.peer()) to the socket's (k.local()),
// IPv4 (v4-mapped IPv6 addresses too) or IPv6.
void send_made_up_segment(const pb::InetSocket& k, const MadeUpSegment& segment, const std::string& what);

}  // namespace stasis::restore
