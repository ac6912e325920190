#include "images/inspect.h"


#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

#include "common/error.h"
#include "common/json.h"
#include "proto/reflection.h"
#include "images/checkpoint.h"
#include "images/image_file.h"
#include "images/image_messages.h"
#include "images/page_chain.h"
#include "images/page_file.h"

namespace stasis::images {

namespace fs = std::filesystem;

namespace {

std::string record_json(const google::protobuf::MessageLite& m) {
  return pb::to_json(m, {.pretty = false, .proto_field_names = true, .print_defaults = true});
}

// Appends "records":[...] for every record of a protobuf image.
void records_json(const fs::path& path, ImageType type, std::string* out) {
  ImageReader reader(path, type);
  std::unique_ptr<google::protobuf::MessageLite> m;
  if (type == ImageType::Pagemap) {
    pb::PagemapHeader header;
    if (!reader.read(header)) fail("{}: no PagemapHeader record", path.string());
    *out += ",\"header\":" + record_json(header);
  }
  m = new_record(type);
  *out += ",\"records\":[";
  bool first = true;
  while (reader.read(*m)) {
    if (!first) *out += ',';
    first = false;
    *out += record_json(*m);
  }
  *out += ']';
}

// Ranges, page counts and sizes of one page file, not its data.
void pages_summary_json(const fs::path& dir, int64_t id, std::string* out) {
  PageReader reader(dir, id);
  const auto& header = reader.header();
  uint64_t ps = header.page_size();
  std::vector<pb::PagemapEntry> sorted = reader.entries();
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.vaddr() < b.vaddr(); });
  uint64_t pages = 0, zero_pages = 0, parent_pages = 0;
  std::set<uint64_t> chunks;
  std::string ranges;
  uint64_t start = 0, end = 0, range_pages = 0, range_zero = 0;
  auto close_range = [&] {
    if (range_pages == 0) return;
    if (!ranges.empty()) ranges += ',';
    ranges += fmt::format("{{\"start\":\"{:#x}\",\"end\":\"{:#x}\",\"pages\":{},\"zero_pages\":{}}}", start, end,
                          range_pages, range_zero);
  };
  for (const auto& e : sorted) {
    if (e.in_parent()) {  // in a parent checkpoint's files
      parent_pages += e.nr_pages();
      continue;
    }
    uint64_t e_end = e.vaddr() + e.nr_pages() * ps;
    if (range_pages == 0 || e.vaddr() != end) {
      close_range();
      start = e.vaddr();
      range_pages = range_zero = 0;
    }
    end = e_end;
    range_pages += e.nr_pages();
    pages += e.nr_pages();
    if (e.zero()) {
      range_zero += e.nr_pages();
      zero_pages += e.nr_pages();
    } else {
      chunks.insert(e.chunk_offset());
    }
  }
  close_range();
  uint64_t raw = (pages - zero_pages) * ps;
  uint64_t stored = fs::file_size(dir / image_file_name(ImageType::Pages, id));
  *out += fmt::format(
      ",\"summary\":{{\"compression\":{},\"page_size\":{},\"chunk_size\":{},\"chunks\":{},\"entries\":{},"
      "\"pages\":{},\"zero_pages\":{},\"parent_pages\":{},\"raw_bytes\":{},\"stored_bytes\":{},\"ratio\":{:.3f},\"ranges\":[{}]}}",
      json_string(header.compression()), ps, header.chunk_size(), chunks.size(), sorted.size(), pages, zero_pages,
      parent_pages, raw,
      stored, stored ? static_cast<double>(raw) / static_cast<double>(stored) : 0.0, ranges);
}

ParsedImageName parse_listed(const fs::path& dir, const std::string& name) {
  auto parsed = parse_image_file_name(name);
  if (!parsed || parsed->type == ImageType::Inventory) {
    fail("{}: unknown image file (its name is not one of a kind stasis writes)", (dir / name).string());
  }
  if (parsed->type == ImageType::Pages && !parsed->id) fail("{}: a page file needs an id", (dir / name).string());
  return *parsed;
}

}  // namespace

std::string checkpoint_json(const fs::path& dir) {
  Checkpoint cp = Checkpoint::open(dir);
  std::string out = "{\"directory\":" + json_string(dir.string());
  out += ",\"inventory\":" + record_json(cp.inventory());
  // Incremental checkpoints: this one and its parents, newest first (images/page_chain.h).
  if (!cp.inventory().parent().empty() || cp.inventory().pre_dump()) out += ",\"chain\":" + chain_json(cp);
  out += ",\"images\":[";
  bool first = true;
  for (const auto& image : cp.inventory().images()) {
    ParsedImageName parsed = parse_listed(dir, image.name());
    if (!first) out += ',';
    first = false;
    out += "{\"file\":" + json_string(image.name());
    out += ",\"type\":" + json_string(type_name(parsed.type));
    if (parsed.id) out += fmt::format(",\"id\":{}", *parsed.id);
    if (parsed.type == ImageType::Pages) {
      pages_summary_json(dir, *parsed.id, &out);
    } else {
      records_json(dir / image.name(), parsed.type, &out);
    }
    out += '}';
  }
  out += "]}";
  return pretty_json(out);
}

size_t verify_checkpoint(const fs::path& dir) {
  Checkpoint cp = Checkpoint::open(dir);
  cp.verify();
  size_t checked = 1 + verify_parents(cp);  // the inventory, and every file of the parents
  for (const auto& image : cp.inventory().images()) {
    ParsedImageName parsed = parse_listed(dir, image.name());
    if (parsed.type == ImageType::Pages) {
      PageReader reader(dir, *parsed.id);
      reader.for_each([](uint64_t, uint64_t, std::span<const std::byte>, bool) {});
    } else {
      ImageReader reader(dir / image.name(), parsed.type);
      if (parsed.type == ImageType::Pagemap) {
        pb::PagemapHeader header;
        if (!reader.read(header)) fail("{}: no PagemapHeader record", (dir / image.name()).string());
      }
      auto m = new_record(parsed.type);
      while (reader.read(*m)) {
      }
    }
    ++checked;
  }
  return checked;
}

std::string hex_dump(uint64_t address, std::span<const std::byte> data) {
  std::string out;
  for (size_t line = 0; line < data.size(); line += 16) {
    size_t n = std::min<size_t>(16, data.size() - line);
    std::string hex, text;
    for (size_t i = 0; i < n; ++i) {
      auto b = static_cast<unsigned>(data[line + i]);
      if (i > 0 && i % 2 == 0) hex += ' ';
      hex += fmt::format("{:02x}", b);
      text += (b >= 0x20 && b < 0x7f) ? static_cast<char>(b) : '.';
    }
    out += fmt::format("{:08x}: {:<39}  {}\n", address + line, hex, text);
  }
  return out;
}


std::string pretty_json(std::string_view in) {
  std::string out;
  out.reserve(in.size() * 2);
  int depth = 0;
  bool in_string = false;
  auto newline = [&] {
    out += '\n';
    out.append(static_cast<size_t>(depth) * 2, ' ');
  };
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < in.size()) {
        out += in[++i];
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        out += c;
        break;
      case '{':
      case '[':
        out += c;
        // Keep empty objects and arrays on one line.
        if (i + 1 < in.size() && (in[i + 1] == '}' || in[i + 1] == ']')) {
          out += in[++i];
        } else {
          ++depth;
          newline();
        }
        break;
      case '}':
      case ']':
        --depth;
        newline();
        out += c;
        break;
      case ',':
        out += c;
        newline();
        break;
      case ':':
        out += ": ";
        break;
      case ' ':
      case '\n':
      case '\t':
      case '\r':
        break;
      default:
        out += c;
    }
  }
  out += '\n';
  return out;
}

}  // namespace stasis::images
