// `stasis show DIR`: the checkpoint as one JSON document; `--verify` checks every checksum;
// `--pages ADDR[:LEN]` prints saved memory like xxd.
#include <charconv>
#include <cstdio>
#include <optional>
#include <set>

#include "cli/cli.h"
#include "common/error.h"
#include "images/checkpoint.h"
#include "images/inspect.h"
#include "images/page_file.h"

namespace stasis::cli {

namespace {

namespace fs = std::filesystem;

struct ShowOptions {
  std::string dir;
  bool verify = false;
  bool json = true;
  std::string pages;
  int64_t id = -1;
};

constexpr uint64_t kMaxDump = 64ull << 20;

uint64_t parse_number(std::string_view s, bool hex_default, const std::string& what) {
  int base = hex_default ? 16 : 10;
  if (s.starts_with("0x") || s.starts_with("0X")) {
    s.remove_prefix(2);
    base = 16;
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    throw UsageError(fmt::format("--pages: bad {} '{}'", what, s));
  }
  return v;
}

// The page file to dump from: --id, or the only one, or the root process's.
int64_t pick_page_file(const images::Checkpoint& cp, int64_t id) {
  std::set<int64_t> ids;
  for (const auto& image : cp.inventory().images()) {
    auto parsed = images::parse_image_file_name(image.name());
    if (parsed && parsed->type == images::ImageType::Pages && parsed->id) ids.insert(*parsed->id);
  }
  if (id >= 0) {
    if (!ids.count(id)) fail("checkpoint {}: no page file pages-{}.img", cp.dir().string(), id);
    return id;
  }
  if (ids.empty()) fail("checkpoint {}: holds no page file", cp.dir().string());
  if (ids.size() == 1) return *ids.begin();
  if (ids.count(cp.inventory().root_pid())) return cp.inventory().root_pid();
  std::string list;
  for (int64_t i : ids) list += fmt::format(" {}", i);
  throw UsageError(fmt::format("checkpoint {} has several page files (ids:{}); choose one with --id",
                               cp.dir().string(), list));
}

int show_pages(const ShowOptions& o) {
  std::string_view spec = o.pages;
  size_t colon = spec.find(':');
  uint64_t addr = parse_number(spec.substr(0, colon), true, "address");
  images::Checkpoint cp = images::Checkpoint::open(o.dir);
  uint64_t len = cp.inventory().page_size() ? cp.inventory().page_size() : 4096;
  if (colon != std::string_view::npos) len = parse_number(spec.substr(colon + 1), false, "length");
  if (len == 0 || len > kMaxDump) throw UsageError(fmt::format("--pages: length {} is not between 1 and {}", len, kMaxDump));
  int64_t id = pick_page_file(cp, o.id);
  cp.verify_file(images::image_file_name(images::ImageType::Pagemap, id));
  images::PageReader reader(o.dir, id);
  std::vector<std::byte> data = reader.read_range(addr, len);
  std::string text = images::hex_dump(addr, data);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return kExitOk;
}

int run_show(const ShowOptions& o) {
  std::error_code ec;
  if (!fs::exists(o.dir, ec)) fail("checkpoint directory {} does not exist", o.dir);
  if (o.verify) {
    size_t n = images::verify_checkpoint(o.dir);
    std::printf("ok: %s (%zu files verified)\n", o.dir.c_str(), n);
    return kExitOk;
  }
  if (!o.pages.empty()) return show_pages(o);
  std::string json = images::checkpoint_json(o.dir);
  std::fwrite(json.data(), 1, json.size(), stdout);
  return kExitOk;
}

}  // namespace

void add_show_command(Cli& cli) {
  auto opts = std::make_shared<ShowOptions>();
  auto* cmd = cli.app.add_subcommand("show", "Print a checkpoint as JSON");
  cmd->add_option("dir", opts->dir, "Checkpoint directory")->required();
  cmd->footer(R"(Examples:
  stasis show /var/lib/ckpt/web | less
  stasis show --verify /var/lib/ckpt/web
  stasis show /var/lib/ckpt/web --pages 7f0000001000:256)");
  auto* verify = cmd->add_flag("--verify", opts->verify, "Check every checksum; print ok or the first error (exit 1)");
  cmd->add_flag("--json", opts->json, "Print JSON (the default)");
  auto* pages = cmd->add_option("--pages", opts->pages, "Hex dump of saved memory: ADDR[:LEN] (ADDR hex, LEN bytes, default a page)");
  cmd->add_option("--id", opts->id, "Which page file --pages reads (pages-ID.img); default: the only one or the root's");
  pages->excludes(verify);
  cmd->callback([&cli, opts] { cli.action = [opts]() -> int { return run_show(*opts); }; });
}

}  // namespace stasis::cli
