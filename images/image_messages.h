// Which protobuf message each kind of image file holds, for code that reads images it
// does not know in advance (`stasis show`, `show --verify`).
#pragma once

#include <memory>

#include <google/protobuf/message_lite.h>

#include "images/image_type.h"

namespace stasis::images {

// A new empty message of the record type of this kind. Pagemap files start with one
// pb::PagemapHeader and go on with pb::PagemapEntry (this returns the entry); Pages files
// are not protobuf and give nullptr.
std::unique_ptr<google::protobuf::MessageLite> new_record(ImageType type);

}  // namespace stasis::images
