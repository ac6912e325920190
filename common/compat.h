// The one place for kernel ABI newer than the headers we build against (Debian 12: Linux 6.1
// uapi, glibc 2.36) while we run on much newer kernels (6.18 here). Every definition is
// guarded so that it steps aside when the system headers provide it, and the layouts are
// the kernel's exact uapi layouts (checked with static_asserts where the size is part of the
// ABI, e.g. PAGEMAP_SCAN checks `size`).
//
// Include system headers that may define the same things (<linux/fs.h>, <linux/userfaultfd.h>)
// before this file, so that the guards see them.
//
// Syscall wrappers use syscall(2) directly: glibc 2.36 has no clone3() wrapper at all and
// its pidfd wrappers would tie us to glibc >= 2.36.
#pragma once

#include <linux/sched.h>  // struct clone_args (set_tid since 5.5), CLONE_ARGS_SIZE_VER*
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

// ---------------------------------------------------------------------------------------
// PAGEMAP_SCAN (Linux 6.7, include/uapi/linux/fs.h): one ioctl on /proc/PID/pagemap reports
// runs of pages sharing categories, and can write-protect written pages (with userfaultfd
// WP_ASYNC) for dirty tracking.
#ifndef PAGEMAP_SCAN

#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
#define PAGE_IS_PFNZERO (1 << 5)
#define PAGE_IS_HUGE (1 << 6)
#define PAGE_IS_SOFT_DIRTY (1 << 7)

// One run of pages [start, end) with the same categories (PAGE_IS_* & return_mask).
struct page_region {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};

#define PM_SCAN_WP_MATCHING (1 << 0)    // write-protect the matched pages
#define PM_SCAN_CHECK_WPASYNC (1 << 1)  // abort on a page without async write-protect

struct pm_scan_arg {
  uint64_t size;      // sizeof(struct pm_scan_arg)
  uint64_t flags;     // PM_SCAN_*
  uint64_t start;     // range to scan
  uint64_t end;
  uint64_t walk_end;  // written by the kernel: where the walk stopped
  uint64_t vec;       // struct page_region[vec_len]
  uint64_t vec_len;
  uint64_t max_pages;  // 0: no limit
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)

#endif  // PAGEMAP_SCAN

// Added in 6.14 (guard regions from MADV_GUARD_INSTALL); reported only when asked for.
#ifndef PAGE_IS_GUARD
#define PAGE_IS_GUARD (1 << 8)
#endif

static_assert(sizeof(struct page_region) == 24, "page_region must match the kernel uapi");
static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg must match the kernel uapi");

// ---------------------------------------------------------------------------------------
// userfaultfd features newer than 6.1.
#include <linux/userfaultfd.h>

#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)  // 6.4: WP also applies to never-touched pages
#endif
#ifndef UFFD_FEATURE_POISON
#define UFFD_FEATURE_POISON (1 << 14)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)  // 6.7: the kernel resolves WP faults itself
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC 0xAA
#define USERFAULTFD_IOC_NEW _IO(USERFAULTFD_IOC, 0x00)
#endif

// ---------------------------------------------------------------------------------------
// clone3 (5.3) with set_tid (5.5): the 6.1 header has struct clone_args with set_tid and
// set_tid_size (CLONE_ARGS_SIZE_VER1) and cgroup (VER2). We pass sizeof the struct we know.
static_assert(sizeof(struct clone_args) >= CLONE_ARGS_SIZE_VER1, "clone_args needs set_tid");
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef CLONE_CLEAR_SIGHAND
#define CLONE_CLEAR_SIGHAND 0x100000000ULL
#endif

// ---------------------------------------------------------------------------------------
// ptrace: glibc 2.36's <sys/ptrace.h> already has PTRACE_GET_RSEQ_CONFIGURATION and
// struct __ptrace_rseq_configuration; this covers older libcs.
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#define STASIS_NEED_RSEQ_CONFIGURATION_STRUCT 1
#endif
#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif
#ifndef NT_PRSTATUS
#define NT_PRSTATUS 1
#endif

// ---------------------------------------------------------------------------------------
// mmap / prctl constants.
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif
#ifndef PR_SET_MM
#define PR_SET_MM 35
#endif
#ifndef PR_SET_MM_MAP
#define PR_SET_MM_MAP 14
#endif
#ifndef PR_SET_MM_MAP_SIZE
#define PR_SET_MM_MAP_SIZE 15
#endif
// prctl (6.3): memory-deny-write-execute.
#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#endif
// prctl (6.17): timer_create takes the id it is given instead of picking one.
#ifndef PR_TIMER_CREATE_RESTORE_IDS
#define PR_TIMER_CREATE_RESTORE_IDS 77
#define PR_TIMER_CREATE_RESTORE_IDS_OFF 0
#define PR_TIMER_CREATE_RESTORE_IDS_ON 1
#define PR_TIMER_CREATE_RESTORE_IDS_GET 2
#endif

// ---------------------------------------------------------------------------------------
// kcmp (3.5): compare kernel objects of two tasks.
#ifndef KCMP_FILE
#define KCMP_FILE 0
#define KCMP_VM 1
#define KCMP_FILES 2
#define KCMP_FS 3
#define KCMP_SIGHAND 4
#define KCMP_IO 5
#define KCMP_SYSVSEM 6
#define KCMP_EPOLL_TFD 7
#endif

// Syscall numbers (x86_64), for headers that predate them.
#ifndef __NR_pidfd_open
#define __NR_pidfd_open 434
#endif
#ifndef __NR_clone3
#define __NR_clone3 435
#endif
#ifndef __NR_pidfd_getfd
#define __NR_pidfd_getfd 438
#endif
#ifndef __NR_process_mrelease
#define __NR_process_mrelease 448
#endif
#ifndef __NR_mseal
#define __NR_mseal 462
#endif
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif
#ifndef __NR_kcmp
#define __NR_kcmp 312
#endif
#ifndef __NR_rseq
#define __NR_rseq 334
#endif

namespace stasis::compat {

// membarrier (6.3): the commands this process registered for, as MEMBARRIER_CMD_REGISTER_* bits.
inline constexpr int kMembarrierCmdGetRegistrations = 1 << 9;

// kcmp(KCMP_EPOLL_TFD)'s slot (struct kcmp_epoll_slot of <linux/kcmp.h>, which clashes with
// glibc's headers): an epoll fd, a target fd it watches, which of its entries for that fd.
struct KcmpEpollSlot {
  uint32_t efd;
  uint32_t tfd;
  uint32_t toff;
};

#ifdef STASIS_NEED_RSEQ_CONFIGURATION_STRUCT
struct RseqConfigurationAbi {
  uint64_t rseq_abi_pointer;
  uint32_t rseq_abi_size;
  uint32_t signature;
  uint32_t flags;
  uint32_t pad;
};
#else
using RseqConfigurationAbi = struct __ptrace_rseq_configuration;
#endif
static_assert(sizeof(RseqConfigurationAbi) == 24);

// rseq(2) flags and the signature glibc registers on x86 (RSEQ_SIG).
inline constexpr int kRseqFlagUnregister = 1 << 0;
inline constexpr uint32_t kRseqSigX86 = 0x53053053;

// ptrace(PTRACE_GETREGSET, NT_X86_XSTATE) has no fixed size; CPUID leaf 0xD tells it.
inline constexpr size_t kMaxXstateSize = 64 * 1024;

// The kernel's struct sigaction for rt_sigaction(2) on x86_64 (glibc's differs: its mask is
// 1024 bits and it fills in its own restorer), so handlers are read and set exactly.
struct KernelSigaction {
  uint64_t handler;   // SIG_DFL 0, SIG_IGN 1, or an address
  uint64_t flags;     // SA_*
  uint64_t restorer;
  uint64_t mask;
};
static_assert(sizeof(KernelSigaction) == 32);

// Raw syscalls. They return -1 and set errno like glibc wrappers.
inline long sys_clone3(struct clone_args* args, size_t size) { return ::syscall(__NR_clone3, args, size); }
inline int sys_pidfd_open(pid_t pid, unsigned int flags) {
  return static_cast<int>(::syscall(__NR_pidfd_open, pid, flags));
}
inline int sys_pidfd_getfd(int pidfd, int targetfd, unsigned int flags) {
  return static_cast<int>(::syscall(__NR_pidfd_getfd, pidfd, targetfd, flags));
}
inline int sys_process_mrelease(int pidfd, unsigned int flags) {
  return static_cast<int>(::syscall(__NR_process_mrelease, pidfd, flags));
}
inline int sys_kcmp(pid_t pid1, pid_t pid2, int type, unsigned long idx1, unsigned long idx2) {
  return static_cast<int>(::syscall(__NR_kcmp, pid1, pid2, type, idx1, idx2));
}
// Kernel-internal results of an interrupted system call (include/linux/errno.h), seen negated
// in rax of a task stopped inside one; the kernel restarts such a call on the way out.
inline constexpr long kErestartSys = 512;
inline constexpr long kErestartNoIntr = 513;
inline constexpr long kErestartNoHand = 514;
inline constexpr long kErestartRestartBlock = 516;

inline int sys_userfaultfd(int flags) { return static_cast<int>(::syscall(__NR_userfaultfd, flags)); }
inline int sys_rseq(void* rseq, uint32_t len, int flags, uint32_t sig) {
  return static_cast<int>(::syscall(__NR_rseq, rseq, len, flags, sig));
}

}  // namespace stasis::compat
