# Turns a FileDescriptorSet (protoc --descriptor_set_out) into a C++ source holding its bytes.
#   cmake -DIN=stasis.desc -DOUT=descriptor_set.cc -P embed_descriptors.cmake
file(READ ${IN} hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(LENGTH "${hex}" hex_length)
math(EXPR size "${hex_length} / 2")
file(WRITE ${OUT} "// Generated from ${IN} by proto/embed_descriptors.cmake.\n"
  "#include \"proto/descriptor_set.h\"\n"
  "namespace stasis::pb {\n"
  "namespace {\n"
  "const unsigned char kBytes[] = {${bytes}};\n"
  "}  // namespace\n"
  "std::string_view descriptor_set() { return {reinterpret_cast<const char*>(kBytes), ${size}}; }\n"
  "}  // namespace stasis::pb\n")
