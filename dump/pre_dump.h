// `stasis dump --pre-dump`: the job's memory while it keeps running, and the start (or the
// next round) of its dirty tracking (dump/incremental.h). The job is stopped only while its
// memory layout is read and the pages to save are found and write-protected; it runs again
// while they are copied (a page it writes meanwhile is written since, and goes into the next
// dump). The directory holds the inventory (pre_dump set), mm-<id>.img and the page files:
// a parent for the next dump, never restored by itself.
#pragma once

#include "dump/dump.h"

namespace stasis::dump {

DumpReport pre_dump(const DumpOptions& options);

}  // namespace stasis::dump
