// namespaces.img: each namespace kind's inode, whether the job has its own (it differs from
// PID 1's), and the contents of its UTS namespace.
#pragma once

#include <sys/types.h>

#include "namespaces.pb.h"

namespace stasis::dump {

pb::NamespaceState collect_namespaces(pid_t pid);

// hostname and domainname as seen inside pid's UTS namespace (a forked child setns()es there).
void read_uts(pid_t pid, std::string& hostname, std::string& domainname);

}  // namespace stasis::dump
