#include "proto/reflection.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/descriptor.pb.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>

#include <memory>
#include <mutex>

#include "common/error.h"
#include "proto/descriptor_set.h"

namespace stasis::pb {

namespace {

struct Reflection {
  google::protobuf::DescriptorPool pool;
  std::unique_ptr<google::protobuf::DynamicMessageFactory> factory;
};

const Reflection& reflection() {
  static Reflection* r = [] {
    auto* out = new Reflection;
    google::protobuf::FileDescriptorSet set;
    std::string_view bytes = descriptor_set();
    if (!set.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) fail("embedded descriptor set is corrupt");
    // --include_imports lists every file after the files it imports.
    for (const auto& file : set.file())
      if (!out->pool.BuildFile(file)) fail("embedded descriptor set: cannot build {}", file.name());
    out->factory = std::make_unique<google::protobuf::DynamicMessageFactory>(&out->pool);
    return out;
  }();
  return *r;
}

}  // namespace

std::unique_ptr<google::protobuf::Message> to_dynamic(const google::protobuf::MessageLite& message) {
  const Reflection& r = reflection();
  const auto* descriptor = r.pool.FindMessageTypeByName(message.GetTypeName());
  if (!descriptor) fail("no descriptor for message type {}", message.GetTypeName());
  std::unique_ptr<google::protobuf::Message> dynamic(r.factory->GetPrototype(descriptor)->New());
  if (!dynamic->ParseFromString(message.SerializeAsString())) fail("re-reading a {} failed", message.GetTypeName());
  return dynamic;
}

std::string to_json(const google::protobuf::MessageLite& message, JsonOptions options) {
  std::unique_ptr<google::protobuf::Message> dynamic = to_dynamic(message);
  google::protobuf::util::JsonPrintOptions print;
  print.add_whitespace = options.pretty;
  print.preserve_proto_field_names = options.proto_field_names;
  print.always_print_primitive_fields = options.print_defaults;
  std::string out;
  auto status = google::protobuf::util::MessageToJsonString(*dynamic, &out, print);
  if (!status.ok()) fail("JSON of a {}: {}", message.GetTypeName(), status.ToString());
  return out;
}

}  // namespace stasis::pb
