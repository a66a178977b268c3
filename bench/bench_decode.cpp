// bench_decode: JPEG/PNG decoding speed, the engine's decoders (libjpeg-turbo, libpng: PIL-exact)
// against stb_image (what the engine used before), on the same files in one run, alternating.
//   build/bench_decode DIR [--rounds N]
// A private copy of stb_image with its JPEG and PNG decoders (the engine's own copy has them
// compiled out: it never decodes those formats).
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#include <stb_image.h>
#pragma GCC diagnostic pop

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "host/core/cli.h"
#include "host/core/common.h"
#include "host/io/dataset.h"
#include "host/io/image.h"

using namespace tl;

int main(int argc, char** argv) {
  return guarded_main("bench_decode", [&] {
    std::vector<std::string> dirs;
    int rounds = 3;
    Cli cli("bench_decode", "bench_decode DIR [--rounds N]",
            "Decodes every image under DIR with the engine's decoders and with stb_image, alternating, and prints\n"
            "megapixels per second for each (median of the rounds) and their ratio. One thread.");
    cli.positional(&dirs, "DIR", "a folder or zip of images");
    cli.opt("--rounds", &rounds, "N", "rounds over the files");
    if (!cli.parse(argc, argv)) return 0;
    if (dirs.size() != 1) fail("give one DIR");
    Dataset ds = scan_dataset(dirs[0], "", ScanOptions());
    std::vector<std::vector<uint8_t>> files;
    double mpix = 0;
    for (const DataFile& f : ds.files) {
      std::vector<uint8_t> b = ds.read(f, (uint64_t)1 << 30);
      try {
        Image img = decode_image(b.data(), b.size(), f.rel);
        mpix += (double)img.w * img.h / 1e6;
        files.push_back(std::move(b));
      } catch (const Error&) {
      }
    }
    std::vector<double> ours, stb;
    for (int r = 0; r < rounds; r++) {
      double t0 = now_s();
      for (auto& b : files) decode_image(b.data(), b.size(), "x");
      ours.push_back(now_s() - t0);
      t0 = now_s();
      for (auto& b : files) {
        int w, h, c;
        unsigned char* p = stbi_load_from_memory(b.data(), (int)b.size(), &w, &h, &c, 3);
        stbi_image_free(p);
      }
      stb.push_back(now_s() - t0);
    }
    std::sort(ours.begin(), ours.end());
    std::sort(stb.begin(), stb.end());
    const double o = ours[ours.size() / 2], s = stb[stb.size() / 2];
    printf("%zu images, %.1f megapixels, median of %d rounds, 1 thread\n", files.size(), mpix, rounds);
    printf("libjpeg-turbo/libpng (PIL-exact): %.2f s  %.1f Mpixel/s  %.0f images/s\n", o, mpix / o, files.size() / o);
    printf("stb_image:                        %.2f s  %.1f Mpixel/s  %.0f images/s\n", s, mpix / s, files.size() / s);
    printf("ratio: ours %.2fx the speed of stb_image\n", s / o);
    return 0;
  });
}
