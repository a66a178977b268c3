// inspect.h: tl_inspect's readers for every file type the project writes.
#pragma once
#include <cstdio>
#include <string>

namespace tl {

// Detects the file type by its magic number (or a cache directory) and prints a summary;
// throws tl::Error when the file is damaged.
void inspect_path(const std::string& path, FILE* out);
void export_npy_files(const std::string& src, const std::string& prefix);

}  // namespace tl
