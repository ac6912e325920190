// POSIX timers (timer_create): id, clock and notification from /proc/PID/timers, the time
// left and the interval from an injected timer_gettime. Timers on a CPU-time clock of one
// thread or process (negative clock ids) are refused: their clock names a host task.
#pragma once

#include <google/protobuf/repeated_ptr_field.h>

#include "dump/inject.h"
#include "dump/task.h"
#include "signals.pb.h"

namespace stasis::dump {

void collect_posix_timers(Task& task, Injector& injector, google::protobuf::RepeatedPtrField<pb::PosixTimer>* out);

}  // namespace stasis::dump
