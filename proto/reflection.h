// Reflection for our lite messages, through a descriptor pool built (once, on first use) from
// the embedded descriptor set: JSON (the same output protobuf's printer gives a full
// message), and reflective copies for code that walks fields.
#pragma once

#include <memory>
#include <string>

#include <google/protobuf/message.h>
#include <google/protobuf/message_lite.h>

namespace stasis::pb {

struct JsonOptions {
  bool pretty = false;            // indented, one field a line
  bool proto_field_names = true;  // "init_pid", not "initPid"
  bool print_defaults = false;    // fields at their default value too
};

// Throws stasis::Error when the message type is unknown or printing fails.
std::string to_json(const google::protobuf::MessageLite& message, JsonOptions options = {});

// A DynamicMessage of the same type holding the same fields. Throws like to_json.
std::unique_ptr<google::protobuf::Message> to_dynamic(const google::protobuf::MessageLite& message);

}  // namespace stasis::pb
