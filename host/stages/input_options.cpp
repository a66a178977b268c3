#include "host/stages/input_options.h"

#include "host/ops/cpu_amx.h"

namespace tl {

void add_input_flags(Cli& cli, DatasetInput* in, const char* data_flag, const std::string& prefix,
                     const std::string& data_help) {
  auto h = [&](const std::string& text) { return prefix + text; };
  cli.opt(data_flag, &in->data, "DIR|ZIP",
          (data_help + "images: the Kaggle layout (cat.N.jpg, dog.N.jpg) or class folders (cat/ dog/, Cat/ Dog/), a "
                       "folder or a .zip read in place; a folder with train/ and valid/ inside uses that split")
              .c_str());
  cli.opt("--valid-data", &in->valid_data, "DIR|ZIP", h("an explicit validation set (default: a split of the data)").c_str());
  cli.opt("--weights", &in->weights, "FILE", h("converted VGG weights (make weights, or ./tl_convert, makes them)").c_str());
  cli.opt("--image-size", &in->image_size, "N", h("input size the images are resized to (N x N)").c_str());
  cli.opt("--resize", &in->resize, "MODE", h("nearest (Keras load_img's default) or bilinear (PIL's, antialiased)").c_str());
  cli.opt("--precision", &in->precision, "P",
          h("the conv base's arithmetic: fp32 (exact, the default), tf32 (GPU tensor cores) or bf16 (GPU tensor "
            "cores, or CPUs with AMX or AVX512_BF16); fp32 accumulation, features within about 1e-3 (tf32) / 1e-2 (bf16) "
            "relative of fp32; recorded in the cache and model. On this CPU bf16 runs on " +
            std::string(cpu::bf16_path_name(cpu::bf16_path())))
              .c_str());
  cli.opt("--valid-fraction", &in->valid_fraction, "F",
          h("fraction of files put in validation, by a hash of each file's class and name (default 0.07696 = the "
            "tutorial's 1,924 of 25,000)")
              .c_str());
  cli.opt("--limit", &in->limit, "N", h("use a deterministic sample of N files (0: all)").c_str());
  cli.opt("--max-bad", &in->max_bad, "F",
          h("fail when more than this fraction of files cannot be used (unreadable, truncated, not an image, too "
            "large); below it they are skipped, counted and listed")
              .c_str());
  cli.opt("--max-pixels", &in->max_pixels, "N", h("refuse images larger than this many pixels").c_str());
  cli.opt("--decode-memory", &in->decode_memory_mb, "MB",
          h("memory the decoding threads share for decoded photos (default 1024): a decode that would go past it "
            "waits for the others, so peak memory stays bounded however many threads decode; 0: no limit")
              .c_str());
}

void apply_decode_limits(const DatasetInput& in) {
  if (in.max_pixels < 1) fail("--max-pixels must be at least 1, got %lld", (long long)in.max_pixels);
  if (in.decode_memory_mb < 0 || in.decode_memory_mb > (int64_t)1 << 30)
    fail("--decode-memory must be between 0 (no limit) and 1073741824 MB, got %lld", (long long)in.decode_memory_mb);
  set_decode_budget(in.decode_memory_mb << 20);
}

}  // namespace tl
