#include "dump/posix_timers.h"

#include <signal.h>
#include <sys/syscall.h>
#include <time.h>

#include <cstdlib>
#include <sstream>
#include <string>

#include "common/error.h"
#include "common/file_util.h"
#include "common/timespec.h"

namespace stasis::dump {

namespace {

// "signal/pid.123" (SIGEV_SIGNAL), "signal/tid.123" (SIGEV_THREAD_ID), "none/pid.123".
void parse_notify(const std::string& text, pb::PosixTimer& t, const Task& task, const std::string& where) {
  const auto slash = text.find('/'), dot = text.find('.');
  if (slash == std::string::npos || dot == std::string::npos || dot < slash)
    fail("{}: cannot read notify '{}'", where, text);
  const std::string kind = text.substr(0, slash), target = text.substr(slash + 1, dot - slash - 1);
  const pid_t host_tid = static_cast<pid_t>(std::strtol(text.c_str() + dot + 1, nullptr, 10));
  if (kind == "none") {
    t.set_notify(SIGEV_NONE);
  } else if (kind == "signal" && target == "pid") {
    t.set_notify(SIGEV_SIGNAL);
  } else if (kind == "signal" && target == "tid") {
    t.set_notify(SIGEV_THREAD_ID);
    for (size_t i = 0; i < task.threads.size(); ++i)
      if (task.threads[i].tid() == host_tid) t.set_notify_tid(task.ns_tids[i]);
    if (t.notify_tid() == 0) fail("{}: it signals thread {}, which is not one of the job's", where, host_tid);
  } else {
    throw UnsupportedError(fmt::format("{}: notification '{}' is not supported", where, text));
  }
}

}  // namespace

void collect_posix_timers(Task& task, Injector& injector, google::protobuf::RepeatedPtrField<pb::PosixTimer>* out) {
  const std::string path = fmt::format("/proc/{}/timers", task.host_pid);
  std::istringstream in(read_file(path));
  std::string line;
  pb::PosixTimer* t = nullptr;
  while (std::getline(in, line)) {
    const auto colon = line.find(": ");
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon), value = line.substr(colon + 2);
    if (key == "ID") {
      t = out->Add();
      t->set_id(static_cast<int32_t>(std::strtol(value.c_str(), nullptr, 10)));
      continue;
    }
    if (!t) fail("{}: '{}' before any ID line", path, line);
    const std::string where = fmt::format("pid {}: POSIX timer {}", task.host_pid, t->id());
    if (key == "signal") {  // "10/00000000deadbeef": signal number / sigev_value
      const auto slash = value.find('/');
      if (slash == std::string::npos) fail("{}: cannot read signal '{}'", where, value);
      t->set_signo(static_cast<int32_t>(std::strtol(value.c_str(), nullptr, 10)));
      t->set_sigev_value(std::strtoull(value.c_str() + slash + 1, nullptr, 16));
    } else if (key == "notify") {
      parse_notify(value, *t, task, where);
    } else if (key == "ClockID") {
      t->set_clock(static_cast<int32_t>(std::strtol(value.c_str(), nullptr, 10)));
      if (t->clock() < 0)
        throw UnsupportedError(fmt::format("{}: it runs on the CPU-time clock of one task (clock id {}): not "
                                           "supported yet",
                                           where, t->clock()));
    }
  }
  for (pb::PosixTimer& timer : *out) {
    injector.clear_scratch(sizeof(itimerspec));
    injector.call_checked(task.threads[0], "timer_gettime", SYS_timer_gettime, static_cast<uint64_t>(timer.id()),
                          injector.scratch());
    const auto its = injector.read_scratch<itimerspec>();
    timer.set_interval_ns(to_nanoseconds(its.it_interval));
    timer.set_value_ns(to_nanoseconds(its.it_value));
  }
}

}  // namespace stasis::dump
