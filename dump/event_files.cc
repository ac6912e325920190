#include "dump/event_files.h"

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "common/compat.h"
#include "common/error.h"

namespace stasis::dump {

namespace {

const std::string* field(const std::vector<std::pair<std::string, std::string>>& fdinfo, const char* key) {
  for (const auto& [k, v] : fdinfo)
    if (k == key) return &v;
  return nullptr;
}

const std::string& require(const std::vector<std::pair<std::string, std::string>>& fdinfo, const char* key,
                           const std::string& where) {
  const std::string* v = field(fdinfo, key);
  if (!v) fail("{}: fdinfo has no '{}' line", where, key);
  return *v;
}

uint64_t number(const std::string& text, int base, const std::string& where) {
  char* end = nullptr;
  const uint64_t n = std::strtoull(text.c_str(), &end, base);
  if (text.empty() || end == text.c_str()) fail("{}: cannot read a number in '{}'", where, text);
  return n;
}

// "(12, 345678)": seconds and nanoseconds.
uint64_t duration_ns(const std::string& text, const std::string& where) {
  unsigned long long sec = 0, nsec = 0;
  if (std::sscanf(text.c_str(), "(%llu, %llu)", &sec, &nsec) != 2) fail("{}: cannot read the time '{}'", where, text);
  return sec * 1000000000ull + nsec;
}

}  // namespace

std::optional<std::string> event_file_kind(const std::string& link) {
  for (const char* kind : {"eventfd", "signalfd", "timerfd", "eventpoll"})
    if (link == fmt::format("anon_inode:[{}]", kind)) return std::string(kind);
  return std::nullopt;
}

void describe_event_file(pid_t pid, int fd, const std::string& kind,
                         const std::vector<std::pair<std::string, std::string>>& fdinfo, pb::EventFile& ev) {
  const std::string where = fmt::format("pid {} fd {} ({})", pid, fd, kind);
  if (kind == "eventfd") {
    auto* e = ev.mutable_eventfd();
    e->set_count(number(require(fdinfo, "eventfd-count", where), 16, where));
    if (const std::string* sem = field(fdinfo, "eventfd-semaphore")) e->set_semaphore(number(*sem, 10, where) != 0);
  } else if (kind == "signalfd") {
    ev.mutable_signalfd()->set_signal_mask(number(require(fdinfo, "sigmask", where), 16, where));
  } else if (kind == "timerfd") {
    auto* t = ev.mutable_timerfd();
    t->set_clockid(static_cast<int32_t>(number(require(fdinfo, "clockid", where), 10, where)));
    t->set_ticks(number(require(fdinfo, "ticks", where), 10, where));
    t->set_value_ns(duration_ns(require(fdinfo, "it_value", where), where));
    t->set_interval_ns(duration_ns(require(fdinfo, "it_interval", where), where));
  } else if (kind == "eventpoll") {
    auto* e = ev.mutable_epoll();
    for (const auto& [key, value] : fdinfo) {
      if (key != "tfd") continue;
      // "       5 events:       19 data:                5  pos:0 ino:b sdev:f"
      int target = 0;
      unsigned events = 0;
      unsigned long long data = 0;
      if (std::sscanf(value.c_str(), "%d events: %x data: %llx", &target, &events, &data) != 3)
        fail("{}: cannot read the watched file '{}'", where, value);
      // The file must still be at that fd: restore adds it back through it.
      compat::KcmpEpollSlot slot{static_cast<uint32_t>(fd), static_cast<uint32_t>(target), 0};
      if (compat::sys_kcmp(pid, pid, KCMP_EPOLL_TFD, static_cast<unsigned long>(target),
                           reinterpret_cast<unsigned long>(&slot)) != 0)
        throw UnsupportedError(fmt::format("{}: it watches a file that is no longer at fd {}: not supported", where,
                                           target));
      auto* t = e->add_targets();
      t->set_fd(target);
      t->set_events(events);
      t->set_data(data);
    }
  } else {
    fail("{}: not an event file", where);
  }
}

}  // namespace stasis::dump
