// cli.h: command-line flags for the tl_* programs. Every program gets --help; an unknown flag, a
// missing value or a malformed number is a one-line error that names the flag.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace tl {

class Cli {
 public:
  Cli(std::string prog, std::string usage, std::string description);
  void flag(const char* name, bool* v, const char* help);
  void opt(const char* name, std::string* v, const char* meta, const char* help);
  void opt(const char* name, int* v, const char* meta, const char* help);
  void opt(const char* name, int64_t* v, const char* meta, const char* help);
  void opt(const char* name, uint64_t* v, const char* meta, const char* help);
  void opt(const char* name, double* v, const char* meta, const char* help);
  void positional(std::vector<std::string>* v, const char* meta, const char* help);
  void epilog(std::string text) { epilog_ = std::move(text); }
  // Returns false when --help was printed (the program should exit 0). Throws tl::Error otherwise.
  bool parse(int argc, char** argv);
  bool given(const char* name) const;
  std::string help() const;
  const std::string& prog() const { return prog_; }

 private:
  struct Opt {
    std::string name, meta, help, def;
    std::function<void(const std::string&)> set;
    bool is_flag = false;
    bool seen = false;
  };
  std::string prog_, usage_, description_, epilog_;
  std::vector<Opt> opts_;
  std::vector<std::string>* positional_ = nullptr;
  std::string pos_meta_, pos_help_;
  Opt* find(const std::string& name);
  std::string suggest(const std::string& name) const;
};

// Runs body, turning tl::Error and allocation failures into "prog: error: ..." and exit code 1.
int guarded_main(const char* prog, const std::function<int()>& body);

// Ctrl-C / SIGTERM: the first sets a flag that long loops poll (interrupted()); a second exits.
void install_interrupt_handler();
bool interrupted();

}  // namespace tl
