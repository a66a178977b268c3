#include "host/cli.h"
#include "host/common.h"
int main(int argc, char** argv) {
  return tl::guarded_main("tl_cache", [&] {
    tl::Cli cli("tl_cache", "tl_cache [options]", "(not yet implemented)");
    if (!cli.parse(argc, argv)) return 0;
    tl::fail("not implemented yet");
    return 0;
  });
}
