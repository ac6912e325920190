#include "restore/creds.h"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <vector>

#include "common/proc.h"

namespace stasis::restore {
namespace {

bool same_as_ours(const pb::Creds& c) {
  const proc::Status self = proc::read_status(getpid());
  const uint32_t uids[4] = {c.uid(), c.euid(), c.suid(), c.fsuid()};
  const uint32_t gids[4] = {c.gid(), c.egid(), c.sgid(), c.fsgid()};
  for (int i = 0; i < 4; ++i)
    if (uids[i] != self.uid[i] || gids[i] != self.gid[i]) return false;
  if (std::vector<uint32_t>(c.groups().begin(), c.groups().end()) != self.groups) return false;
  return c.cap_inheritable() == self.cap_inh && c.cap_permitted() == self.cap_prm &&
         c.cap_effective() == self.cap_eff && c.cap_bounding() == self.cap_bnd && c.cap_ambient() == self.cap_amb &&
         c.securebits() == 0 && c.no_new_privs() == (self.no_new_privs != 0);
}

}  // namespace

void restore_creds(Remote& r, const pb::Creds& c) {
  if (same_as_ours(c)) return;
  if (c.no_new_privs()) r.call_checked("prctl(PR_SET_NO_NEW_PRIVS)", SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
    if (!(c.cap_bounding() & (1ull << cap))) r.call_checked("prctl(PR_CAPBSET_DROP)", SYS_prctl, PR_CAPBSET_DROP, cap);
  std::vector<gid_t> groups(c.groups().begin(), c.groups().end());
  const uint64_t groups_addr = r.put_scratch(groups.data(), groups.size() * sizeof(gid_t));
  r.call_checked("setgroups", SYS_setgroups, groups.size(), groups_addr);
  // Keep the permitted capabilities across the uid change; capset sets the saved ones after.
  r.call_checked("prctl(PR_SET_SECUREBITS)", SYS_prctl, PR_SET_SECUREBITS, c.securebits() | SECBIT_KEEP_CAPS);
  r.call_checked("setresgid", SYS_setresgid, c.gid(), c.egid(), c.sgid());
  r.call(SYS_setfsgid, c.fsgid());
  r.call_checked("setresuid", SYS_setresuid, c.uid(), c.euid(), c.suid());
  r.call(SYS_setfsuid, c.fsuid());
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {
      {static_cast<uint32_t>(c.cap_effective()), static_cast<uint32_t>(c.cap_permitted()),
       static_cast<uint32_t>(c.cap_inheritable())},
      {static_cast<uint32_t>(c.cap_effective() >> 32), static_cast<uint32_t>(c.cap_permitted() >> 32),
       static_cast<uint32_t>(c.cap_inheritable() >> 32)}};
  const uint64_t header_addr = r.put_scratch(&header, sizeof header);
  const uint64_t data_addr = r.append_scratch(data, sizeof data);
  r.call_checked("capset", SYS_capset, header_addr, data_addr);
  for (int cap = 0; cap <= CAP_LAST_CAP; ++cap)
    if (c.cap_ambient() & (1ull << cap))
      r.call_checked("prctl(PR_CAP_AMBIENT_RAISE)", SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0);
  if (!(c.securebits() & SECBIT_KEEP_CAPS)) r.call_checked("prctl(PR_SET_KEEPCAPS)", SYS_prctl, PR_SET_KEEPCAPS, 0);
}

}  // namespace stasis::restore
