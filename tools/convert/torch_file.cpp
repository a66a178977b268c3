#include "tools/convert/torch_file.h"

#include <cstring>
#include <deque>
#include <set>

#include "host/core/common.h"
#include "host/ops/cpu_ops.h"
#include "host/io/zip.h"

namespace tl {

namespace {

// ------------------------------------------------------------------------------------------------
// Python objects, as far as torch checkpoints need them.

struct PyObj;
// Objects live in their unpickler's arena (freed all at once): a pickle can nest lists thousands
// deep, share them (a DAG) or make a list hold itself, none of which may recurse when freed.
using Obj = PyObj*;

struct PyObj {
  enum Kind { None, Bool, Int, Float, Str, Bytes, Tuple, List, Dict, Global, Call, Storage, Tensor } kind = None;
  int64_t i = 0;
  double f = 0;
  std::string s;            // Str / Bytes; Global: "module.name"; Storage: key
  std::vector<Obj> items;   // Tuple / List; Dict: k0, v0, k1, v1, ...; Call: func, args
  // Storage
  std::string dtype;        // "f32", "f64", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "bool"
  int64_t numel = 0, view_offset = 0;
  // Tensor
  Obj storage;
  int64_t offset = 0;
  std::vector<int64_t> size, stride;
};


int dtype_bytes(const std::string& d) {
  if (d == "f64" || d == "i64") return 8;
  if (d == "f32" || d == "i32") return 4;
  if (d == "f16" || d == "bf16" || d == "i16") return 2;
  return 1;
}

std::string storage_dtype(const std::string& global, const std::string& what) {
  static const std::pair<const char*, const char*> names[] = {
      {"FloatStorage", "f32"}, {"DoubleStorage", "f64"}, {"HalfStorage", "f16"}, {"BFloat16Storage", "bf16"},
      {"LongStorage", "i64"},  {"IntStorage", "i32"},    {"ShortStorage", "i16"}, {"CharStorage", "i8"},
      {"ByteStorage", "u8"},   {"BoolStorage", "bool"}};
  std::string name = global.substr(global.rfind('.') + 1);
  for (auto& p : names)
    if (name == p.first) return p.second;
  fail("%s: unsupported storage type %s", what.c_str(), global.c_str());
}

// ------------------------------------------------------------------------------------------------
// The pickle machine.

class Unpickler {
 public:
  Unpickler(const uint8_t* p, size_t n, std::string what) : p_(p), n_(n), what_(std::move(what)) {}
  size_t pos() const { return pos_; }
  Obj make(PyObj::Kind k) {
    arena_.emplace_back();
    arena_.back().kind = k;
    return &arena_.back();
  }
  void seek(size_t p) { pos_ = p; }
  Obj load();

 private:
  const uint8_t* p_;
  size_t n_, pos_ = 0;
  std::string what_;
  std::vector<Obj> stack_;
  std::vector<size_t> marks_;
  std::vector<Obj> memo_;
  std::deque<PyObj> arena_;

  [[noreturn]] void bad(const char* why) {
    fail("%s: corrupt or unsupported pickle data at byte %zu (%s)", what_.c_str(), pos_, why);
  }
  const uint8_t* take(size_t k) {
    if (k > n_ || pos_ > n_ - k) fail("%s: file is truncated (pickle data ends early); re-download it", what_.c_str());
    const uint8_t* r = p_ + pos_;
    pos_ += k;
    return r;
  }
  uint64_t le(size_t k) {
    const uint8_t* b = take(k);
    uint64_t v = 0;
    for (int i = (int)k - 1; i >= 0; i--) v = (v << 8) | b[i];
    return v;
  }
  std::string line() {
    size_t s = pos_;
    while (pos_ < n_ && p_[pos_] != '\n') pos_++;
    if (pos_ >= n_) bad("unterminated line");
    std::string r((const char*)p_ + s, pos_ - s);
    pos_++;
    return r;
  }
  Obj pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) bad("stack underflow");
    Obj o = stack_.back();
    stack_.pop_back();
    return o;
  }
  std::vector<Obj> pop_mark() {
    if (marks_.empty()) bad("no mark");
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Obj> r(stack_.begin() + m, stack_.end());
    stack_.resize(m);
    return r;
  }
  Obj& top() {
    if (stack_.empty()) bad("empty stack");
    return stack_.back();
  }
  void memo_put(size_t idx, Obj o) {
    if (idx > n_) bad("memo index");  // real pickles number their memo entries from 0
    if (memo_.size() <= idx) memo_.resize(idx + 1);
    memo_[idx] = std::move(o);
  }
  Obj memo_get(size_t idx) {
    if (idx >= memo_.size() || !memo_[idx]) bad("memo miss");
    return memo_[idx];
  }
  Obj str(const uint8_t* b, size_t k, PyObj::Kind kind) {
    Obj o = make(kind);
    o->s.assign((const char*)b, k);
    return o;
  }
  Obj integer(int64_t v) {
    Obj o = make(PyObj::Int);
    o->i = v;
    return o;
  }
  Obj reduce(Obj func, Obj args);
  Obj persistent(Obj pid);
};

Obj Unpickler::persistent(Obj pid) {
  if (pid->kind != PyObj::Tuple || pid->items.size() < 5 || pid->items[0]->kind != PyObj::Str ||
      pid->items[0]->s != "storage")
    bad("unexpected persistent id");
  Obj st = make(PyObj::Storage);
  Obj type = pid->items[1];
  if (type->kind != PyObj::Global) bad("storage type");
  st->dtype = storage_dtype(type->s, what_);
  st->s = pid->items[2]->kind == PyObj::Int ? std::to_string(pid->items[2]->i) : pid->items[2]->s;
  st->numel = pid->items[4]->kind == PyObj::Int ? pid->items[4]->i : 0;
  if (pid->items.size() >= 6 && pid->items[5]->kind == PyObj::Tuple) {  // old-style view of a root storage
    const auto& vm = pid->items[5]->items;
    if (vm.size() >= 3) {
      if (vm[1]->kind != PyObj::Int || vm[2]->kind != PyObj::Int || vm[1]->i < 0 || vm[2]->i < 0)
        bad("storage view offset or size");
      st->view_offset = vm[1]->i;
      st->numel = vm[2]->i;
    }
  }
  return st;
}

std::vector<int64_t> ints(const Obj& o, const char* what, const std::string& file) {
  if (o->kind != PyObj::Tuple && o->kind != PyObj::List) fail("%s: %s is not a tuple", file.c_str(), what);
  std::vector<int64_t> r;
  for (auto& x : o->items) {
    if (x->kind != PyObj::Int) fail("%s: %s holds a non-integer", file.c_str(), what);
    r.push_back(x->i);
  }
  return r;
}

Obj Unpickler::reduce(Obj func, Obj args) {
  const std::string& name = func->kind == PyObj::Global ? func->s : std::string();
  const std::vector<Obj>& a = args->items;
  if (name == "collections.OrderedDict" || name == "builtins.dict" || name == "__builtin__.dict") return make(PyObj::Dict);
  if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
    if (a.size() < 4 || a[0]->kind != PyObj::Storage) bad("tensor arguments");
    Obj t = make(PyObj::Tensor);
    t->storage = a[0];
    if (a[1]->kind != PyObj::Int) bad("tensor offset");
    t->offset = a[1]->i;
    t->size = ints(a[2], "tensor size", what_);
    t->stride = ints(a[3], "tensor stride", what_);
    return t;
  }
  if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state") {
    if (a.empty()) bad("parameter arguments");
    return a[0];
  }
  if (name == "_codecs.encode" && !a.empty() && a[0]->kind == PyObj::Str) {  // bytes in protocol 2
    Obj b = make(PyObj::Bytes);
    // latin-1: each code point < 256 becomes one byte; the string is UTF-8 here
    const std::string& s = a[0]->s;
    for (size_t i = 0; i < s.size(); i++) {
      unsigned char c = (unsigned char)s[i];
      if (c < 0x80) {
        b->s += (char)c;
      } else if ((c & 0xE0) == 0xC0 && i + 1 < s.size()) {
        b->s += (char)(((c & 0x1F) << 6) | ((unsigned char)s[i + 1] & 0x3F));
        i++;
      }
    }
    return b;
  }
  Obj c = make(PyObj::Call);
  c->items = {func, args};
  return c;
}

Obj Unpickler::load() {
  stack_.clear();
  marks_.clear();
  memo_.clear();
  for (;;) {
    const uint8_t op = *take(1);
    switch (op) {
      case 0x80: take(1); break;               // PROTO
      case 0x95: take(8); break;               // FRAME
      case '(': marks_.push_back(stack_.size()); break;
      case ')': stack_.push_back(make(PyObj::Tuple)); break;
      case 't': {
        Obj t = make(PyObj::Tuple);
        t->items = pop_mark();
        stack_.push_back(t);
        break;
      }
      case 0x85: case 0x86: case 0x87: {
        const int k = op - 0x84;
        Obj t = make(PyObj::Tuple);
        t->items.resize(k);
        for (int i = k - 1; i >= 0; i--) t->items[i] = pop();
        stack_.push_back(t);
        break;
      }
      case ']': stack_.push_back(make(PyObj::List)); break;
      case 'l': {
        Obj l = make(PyObj::List);
        l->items = pop_mark();
        stack_.push_back(l);
        break;
      }
      case 'a': {
        Obj v = pop();
        top()->items.push_back(v);
        break;
      }
      case 'e': case 0x90: {  // APPENDS, ADDITEMS
        std::vector<Obj> vs = pop_mark();
        Obj& l = top();
        l->items.insert(l->items.end(), vs.begin(), vs.end());
        break;
      }
      case '}': stack_.push_back(make(PyObj::Dict)); break;
      case 0x8f: stack_.push_back(make(PyObj::List)); break;  // EMPTY_SET
      case 0x91: {  // FROZENSET
        Obj l = make(PyObj::List);
        l->items = pop_mark();
        stack_.push_back(l);
        break;
      }
      case 'd': {
        Obj d = make(PyObj::Dict);
        d->items = pop_mark();
        if (d->items.size() % 2) bad("odd dict");
        stack_.push_back(d);
        break;
      }
      case 's': {
        Obj v = pop(), k = pop();
        Obj& d = top();
        if (d->kind == PyObj::Dict) d->items.insert(d->items.end(), {k, v});
        break;
      }
      case 'u': {
        std::vector<Obj> kv = pop_mark();
        if (kv.size() % 2) bad("odd SETITEMS");
        Obj& d = top();
        if (d->kind == PyObj::Dict) d->items.insert(d->items.end(), kv.begin(), kv.end());
        break;
      }
      case 'N': stack_.push_back(make(PyObj::None)); break;
      case 0x88: case 0x89: {
        Obj b = make(PyObj::Bool);
        b->i = op == 0x88;
        stack_.push_back(b);
        break;
      }
      case 'J': stack_.push_back(integer((int32_t)le(4))); break;
      case 'K': stack_.push_back(integer((int64_t)le(1))); break;
      case 'M': stack_.push_back(integer((int64_t)le(2))); break;
      case 0x8a: case 0x8b: {  // LONG1 / LONG4: little-endian two's complement
        const size_t k = op == 0x8a ? le(1) : le(4);
        const uint8_t* b = take(k);
        int64_t v = 0;
        if (k > 0) {
          uint64_t u = 0;
          for (size_t i = 0; i < k && i < 8; i++) u |= (uint64_t)b[i] << (8 * i);
          if (k < 8 && (b[k - 1] & 0x80)) u |= ~0ull << (8 * k);
          v = (int64_t)u;  // wider values (the torch magic number) keep their low 64 bits
        }
        stack_.push_back(integer(v));
        break;
      }
      case 'I': case 'L': {
        std::string s = line();
        if (!s.empty() && s.back() == 'L') s.pop_back();
        if (s == "00" || s == "01") {
          Obj b = make(PyObj::Bool);
          b->i = s == "01";
          stack_.push_back(b);
        } else {
          stack_.push_back(integer(strtoll(s.c_str(), nullptr, 10)));
        }
        break;
      }
      case 'G': {
        const uint8_t* b = take(8);
        uint64_t u = 0;
        for (int i = 0; i < 8; i++) u = (u << 8) | b[i];
        Obj f = make(PyObj::Float);
        memcpy(&f->f, &u, 8);
        stack_.push_back(f);
        break;
      }
      case 'F': {
        Obj f = make(PyObj::Float);
        f->f = strtod(line().c_str(), nullptr);
        stack_.push_back(f);
        break;
      }
      case 'X': { size_t k = le(4); stack_.push_back(str(take(k), k, PyObj::Str)); break; }
      case 0x8c: { size_t k = le(1); stack_.push_back(str(take(k), k, PyObj::Str)); break; }
      case 0x8d: { size_t k = le(8); stack_.push_back(str(take(k), k, PyObj::Str)); break; }
      case 'T': { size_t k = le(4); stack_.push_back(str(take(k), k, PyObj::Str)); break; }
      case 'U': { size_t k = le(1); stack_.push_back(str(take(k), k, PyObj::Str)); break; }
      case 'B': { size_t k = le(4); stack_.push_back(str(take(k), k, PyObj::Bytes)); break; }
      case 'C': { size_t k = le(1); stack_.push_back(str(take(k), k, PyObj::Bytes)); break; }
      case 0x8e: case 0x96: { size_t k = le(8); stack_.push_back(str(take(k), k, PyObj::Bytes)); break; }
      case 'V': { std::string s = line(); stack_.push_back(str((const uint8_t*)s.data(), s.size(), PyObj::Str)); break; }
      case 'S': {
        std::string s = line();
        if (s.size() >= 2 && (s[0] == '\'' || s[0] == '"')) s = s.substr(1, s.size() - 2);
        stack_.push_back(str((const uint8_t*)s.data(), s.size(), PyObj::Str));
        break;
      }
      case 'c': {
        std::string mod = line(), name = line();
        Obj g = make(PyObj::Global);
        g->s = mod + "." + name;
        stack_.push_back(g);
        break;
      }
      case 0x93: {
        Obj name = pop(), mod = pop();
        // Module and name are strings of the file; a global fed back in (DUP, STACK_GLOBAL, ...) would double each time.
        if (name->kind != PyObj::Str || mod->kind != PyObj::Str || mod->s.size() + name->s.size() > 1024)
          bad("global name");
        Obj g = make(PyObj::Global);
        g->s = mod->s + "." + name->s;
        stack_.push_back(g);
        break;
      }
      case 'R': {
        Obj args = pop(), func = pop();
        stack_.push_back(reduce(func, args));
        break;
      }
      case 0x81: {  // NEWOBJ
        Obj args = pop(), cls = pop();
        stack_.push_back(reduce(cls, args));
        break;
      }
      case 0x92: {  // NEWOBJ_EX
        pop();
        Obj args = pop(), cls = pop();
        stack_.push_back(reduce(cls, args));
        break;
      }
      case 'b': pop(); break;  // BUILD: object state (e.g. a state_dict's _metadata) is not needed
      case 'q': memo_put(le(1), top()); break;
      case 'r': memo_put(le(4), top()); break;
      case 'p': memo_put((size_t)strtoull(line().c_str(), nullptr, 10), top()); break;
      case 0x94: memo_put(memo_.size(), top()); break;
      case 'h': stack_.push_back(memo_get(le(1))); break;
      case 'j': stack_.push_back(memo_get(le(4))); break;
      case 'g': stack_.push_back(memo_get((size_t)strtoull(line().c_str(), nullptr, 10))); break;
      case 'Q': stack_.push_back(persistent(pop())); break;
      case 'P': bad("text persistent ids");
      case '0': pop(); break;
      case '1': pop_mark(); break;
      case '2': stack_.push_back(top()); break;
      case '.': {
        Obj r = pop();
        return r;
      }
      default: {
        char why[48];
        snprintf(why, sizeof why, "opcode 0x%02x", op);
        bad(why);
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------

void collect(const Obj& dict, std::vector<std::pair<std::string, Obj>>& out) {
  for (size_t i = 0; i + 1 < dict->items.size(); i += 2) {
    const Obj& k = dict->items[i];
    const Obj& v = dict->items[i + 1];
    if (k->kind != PyObj::Str) continue;
    if (v->kind == PyObj::Tensor) out.push_back({k->s, v});
  }
}

Obj state_dict_of(const Obj& top, const std::string& what) {
  if (top->kind != PyObj::Dict)
    fail("%s: the checkpoint holds a whole pickled object, not a state_dict; save model.state_dict() instead",
         what.c_str());
  for (const char* key : {"state_dict", "model"})
    for (size_t i = 0; i + 1 < top->items.size(); i += 2)
      if (top->items[i]->kind == PyObj::Str && top->items[i]->s == key && top->items[i + 1]->kind == PyObj::Dict)
        return top->items[i + 1];
  return top;
}

TorchTensor materialise(const std::string& key, const Obj& t, const std::map<std::string, std::vector<uint8_t>>& data,
                        const std::string& what) {
  const Obj& st = t->storage;
  auto it = data.find(st->s);
  if (it == data.end()) fail("%s: tensor %s refers to storage %s, which is missing", what.c_str(), key.c_str(), st->s.c_str());
  const int eb = dtype_bytes(st->dtype);
  const std::vector<uint8_t>& bytes = it->second;
  const int64_t stored = (int64_t)(bytes.size() / eb);
  if (st->view_offset > stored)
    fail("%s: tensor %s views its storage from element %lld, past its end (%lld elements): the file is corrupt",
         what.c_str(), key.c_str(), (long long)st->view_offset, (long long)stored);
  const int64_t avail = stored - st->view_offset;
  TorchTensor out;
  out.shape = t->size;
  if (t->stride.size() != t->size.size()) fail("%s: tensor %s has mismatched size and stride", what.c_str(), key.c_str());
  if (t->offset < 0) fail("%s: tensor %s has a negative storage offset (corrupt file)", what.c_str(), key.c_str());
  int64_t count = 1, max_index = t->offset;
  bool overflow = false;
  for (size_t d = 0; d < t->size.size(); d++) {
    if (t->size[d] < 0 || t->stride[d] < 0) fail("%s: tensor %s has a negative size or stride", what.c_str(), key.c_str());
    int64_t reach = 0;
    overflow |= __builtin_mul_overflow(count, t->size[d], &count);
    if (t->size[d] > 0) overflow |= __builtin_mul_overflow(t->size[d] - 1, t->stride[d], &reach);
    overflow |= __builtin_add_overflow(max_index, reach, &max_index);
  }
  if (overflow) fail("%s: tensor %s has sizes or strides too large to address (corrupt file)", what.c_str(), key.c_str());
  if (count > 0 && max_index >= avail)
    fail("%s: tensor %s reaches past the end of its storage (the file is truncated or corrupt)", what.c_str(), key.c_str());
  // A broadcast view (stride 0) could name far more elements than the file holds; weights never do.
  if (count > avail)
    fail("%s: tensor %s has %lld elements but its storage only %lld (an expanded view): not supported", what.c_str(),
         key.c_str(), (long long)count, (long long)avail);
  out.data.resize((size_t)count);
  // The element type, resolved once (not per element).
  enum class Kind { F32, F64, F16, BF16, I64, I32, Byte };
  const std::string& dt = st->dtype;
  const Kind kind = dt == "f32" ? Kind::F32 : dt == "f64" ? Kind::F64 : dt == "f16" ? Kind::F16
                    : dt == "bf16" ? Kind::BF16 : dt == "i64" ? Kind::I64 : dt == "i32" ? Kind::I32 : Kind::Byte;
  std::vector<int64_t> idx(t->size.size(), 0);
  const uint8_t* base = bytes.data() + (size_t)st->view_offset * eb;
  for (int64_t n = 0; n < count; n++) {
    int64_t e = t->offset;
    for (size_t d = 0; d < idx.size(); d++) e += idx[d] * t->stride[d];
    const uint8_t* p = base + (size_t)e * eb;
    float v;
    switch (kind) {
      case Kind::F32: memcpy(&v, p, 4); break;
      case Kind::F64: { double x; memcpy(&x, p, 8); v = (float)x; break; }
      case Kind::F16: { uint16_t h; memcpy(&h, p, 2); v = cpu::float_from_half(h); break; }
      case Kind::BF16: { uint32_t u = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 24; memcpy(&v, &u, 4); break; }
      case Kind::I64: { int64_t x; memcpy(&x, p, 8); v = (float)x; break; }
      case Kind::I32: { int32_t x; memcpy(&x, p, 4); v = (float)x; break; }
      default: v = (float)p[0];
    }
    out.data[(size_t)n] = v;
    for (int d = (int)idx.size() - 1; d >= 0; d--) {
      if (++idx[d] < t->size[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

std::map<std::string, TorchTensor> finish(const Obj& top, const std::map<std::string, std::vector<uint8_t>>& data,
                                          const std::string& what) {
  std::vector<std::pair<std::string, Obj>> items;
  collect(state_dict_of(top, what), items);
  if (items.empty()) fail("%s: no tensors found in the checkpoint", what.c_str());
  std::map<std::string, TorchTensor> out;
  for (auto& [k, t] : items) out[k] = materialise(k, t, data, what);
  return out;
}

// Storages referenced anywhere under o, each object visited once (a pickle can share one list
// from many places, or make a list contain itself).
void storages(const Obj& o, std::vector<Obj>& out, std::set<const PyObj*>& seen, int depth = 0) {
  if (!o || depth > 64 || !seen.insert(o).second) return;
  if (o->kind == PyObj::Tensor) {
    if (o->storage) out.push_back(o->storage);
    return;
  }
  for (auto& x : o->items) storages(x, out, seen, depth + 1);
}
void storages(const Obj& o, std::vector<Obj>& out) {
  std::set<const PyObj*> seen;
  storages(o, out, seen);
}

}  // namespace

bool looks_like_torch_legacy(const uint8_t* p, size_t n) {
  // pickle.dump(0x1950a86a20f9469cfc6c, protocol=2): 80 02 8a 0a <10 bytes LE>
  static const uint8_t magic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  return n >= sizeof magic && memcmp(p, magic, sizeof magic) == 0;
}

std::map<std::string, TorchTensor> read_torch_checkpoint(const std::string& path) {
  std::vector<uint8_t> head;
  {
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) fail("%s: cannot open", path.c_str());
    head.resize(512);
    head.resize(fread(head.data(), 1, head.size(), f));
    fclose(f);
  }
  if (ZipReader::looks_like_zip(head.data(), head.size())) {
    ZipReader z(path);
    const ZipEntry* pkl = nullptr;
    for (const ZipEntry& e : z.entries())
      if (ends_with(e.name, "/data.pkl") || e.name == "data.pkl") pkl = &e;
    if (!pkl) fail("%s: zip archive without data.pkl: not a PyTorch checkpoint", path.c_str());
    const std::string prefix = pkl->name.substr(0, pkl->name.size() - 8);  // "archive/"
    std::vector<uint8_t> bytes = z.read(*pkl);
    Unpickler u(bytes.data(), bytes.size(), path + ":" + pkl->name);
    Obj top = u.load();
    std::vector<Obj> sts;
    storages(top, sts);
    std::map<std::string, std::vector<uint8_t>> data;
    for (const Obj& s : sts) {
      if (data.count(s->s)) continue;
      const ZipEntry* e = z.find(prefix + "data/" + s->s);
      if (!e) fail("%s: storage %s is missing from the archive (truncated file?)", path.c_str(), s->s.c_str());
      data[s->s] = z.read(*e);
    }
    return finish(top, data, path);
  }
  std::vector<uint8_t> bytes = read_file(path);
  if (!looks_like_torch_legacy(bytes.data(), bytes.size())) {
    if (bytes.size() > 262 && memcmp(bytes.data() + 257, "ustar", 5) == 0)
      fail("%s: PyTorch's pre-0.4 tar checkpoint format is not supported; re-save it with a recent torch", path.c_str());
    fail("%s: not a PyTorch checkpoint (no zip header, no legacy magic number)", path.c_str());
  }
  Unpickler u(bytes.data(), bytes.size(), path);
  u.load();  // magic number
  Obj proto = u.load();
  if (proto->kind != PyObj::Int || proto->i != 1001)
    fail("%s: unsupported legacy protocol version %lld", path.c_str(), (long long)proto->i);
  u.load();  // sys_info (little-endian check below relies on the storage layout being LE)
  Obj top = u.load();
  Obj keys = u.load();
  if (keys->kind != PyObj::List) fail("%s: corrupt legacy checkpoint (storage key list)", path.c_str());
  // dtype of each key, from the tensors that use it
  std::map<std::string, std::string> dtypes;
  std::vector<Obj> sts;
  storages(top, sts);
  for (const Obj& s : sts) dtypes[s->s] = s->dtype;
  std::map<std::string, std::vector<uint8_t>> data;
  size_t pos = u.pos();
  for (const Obj& k : keys->items) {
    const std::string key = k->kind == PyObj::Int ? std::to_string(k->i) : k->s;
    auto dt = dtypes.find(key);
    const int eb = dt == dtypes.end() ? 4 : dtype_bytes(dt->second);
    if (pos + 8 > bytes.size()) fail("%s: file is truncated (storage %s missing); re-download it", path.c_str(), key.c_str());
    int64_t numel;
    memcpy(&numel, bytes.data() + pos, 8);
    pos += 8;
    if (numel < 0 || (uint64_t)numel > (bytes.size() - pos) / (uint64_t)eb)
      fail("%s: file is truncated (storage %s wants %lld elements); re-download it", path.c_str(), key.c_str(),
           (long long)numel);
    data[key].assign(bytes.begin() + pos, bytes.begin() + pos + numel * eb);
    pos += (size_t)numel * eb;
  }
  return finish(top, data, path);
}

}  // namespace tl
