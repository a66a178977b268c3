// libFuzzer harness for the ONNX reader (tools/convert/onnx.cpp): any bytes must give either a conv
// stack or a tl::Error, never a crash, a hang or an out-of-bounds access (run under ASan+UBSan).
//   make fuzz-onnx   (clang++ with libFuzzer), then build/fuzz_onnx tests/fixtures/*.onnx -max_total_time=60
#include <cstdint>
#include <vector>

#include "host/core/common.h"
#include "tools/convert/onnx.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> bytes(data, data + size);
  try {
    std::vector<tl::OnnxConv> convs = tl::read_onnx_conv_stack(bytes, "fuzz.onnx");
    for (auto& c : convs)
      if (c.w_oihw.size() != (size_t)9 * c.cin * c.cout || c.b.size() != (size_t)c.cout) __builtin_trap();
  } catch (const tl::Error&) {
  }
  return 0;
}
