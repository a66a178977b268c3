#include "tools/convert/hdf5.h"

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "host/core/common.h"

namespace tl {

namespace {

const uint8_t kSig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
const uint64_t kUndef = ~0ull;

uint64_t rd(const uint8_t* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

struct H5Type {
  int cls = -1;  // 0 fixed-point, 1 float, 3 string, 9 variable-length
  uint32_t size = 0;
  bool big_endian = false, is_signed = false;
};

H5Type parse_type(const uint8_t* p, size_t n) {
  H5Type t;
  if (n < 8) return t;
  t.cls = p[0] & 0x0F;
  t.size = (uint32_t)rd(p + 4, 4);
  if (t.cls == 0 || t.cls == 1) {
    t.big_endian = p[1] & 1;
    t.is_signed = t.cls == 0 ? (p[1] >> 3) & 1 : true;
  }
  return t;
}

float element_to_float(const uint8_t* e, const H5Type& t) {
  if (t.cls == 1 && t.size == 4) {
    float v;
    memcpy(&v, e, 4);
    return v;
  }
  if (t.cls == 1 && t.size == 8) {
    double v;
    memcpy(&v, e, 8);
    return (float)v;
  }
  uint64_t u = rd(e, (int)t.size);
  if (t.is_signed && t.size < 8 && ((u >> (t.size * 8 - 1)) & 1)) u |= ~0ull << (t.size * 8);
  return t.is_signed ? (float)(int64_t)u : (float)u;
}

}  // namespace

bool H5File::is_hdf5(const uint8_t* p, size_t n) {
  for (size_t o = 0; o + 8 <= n && o <= 65536; o = o ? o * 2 : 512)
    if (memcmp(p + o, kSig, 8) == 0) return true;
  return false;
}

void H5File::bad(const char* what) const {
  fail("%s: unsupported or corrupt HDF5 (%s); if it was written by h5py, re-save it with default settings", path_.c_str(),
       what);
}

const uint8_t* H5File::at(uint64_t addr, uint64_t n) const {
  if (addr == kUndef) bad("undefined address");
  uint64_t a = addr + base_;
  if (a < addr || a > buf_.size() || n > buf_.size() - a)
    fail("%s: HDF5 file is truncated (an object lies at byte %llu, past the end of the %zu-byte file); re-download it",
         path_.c_str(), (unsigned long long)a, buf_.size());
  return buf_.data() + a;
}

uint64_t H5File::off(const uint8_t*& p) const {
  uint64_t v = rd(p, so_);
  p += so_;
  if (so_ < 8 && v == (1ull << (8 * so_)) - 1) v = kUndef;
  return v;
}

uint64_t H5File::len(const uint8_t*& p) const {
  uint64_t v = rd(p, sl_);
  p += sl_;
  return v;
}

H5File::H5File(const std::string& path) : path_(path) {
  buf_ = read_file(path);
  size_t sb = std::string::npos;
  for (size_t o = 0; o + 8 <= buf_.size() && o <= 65536; o = o ? o * 2 : 512)
    if (memcmp(buf_.data() + o, kSig, 8) == 0) {
      sb = o;
      break;
    }
  if (sb == std::string::npos) fail("%s: not an HDF5 file (no signature)", path.c_str());
  if (buf_.size() < sb + 48) fail("%s: HDF5 file is truncated (superblock incomplete)", path.c_str());
  const uint8_t* p = buf_.data() + sb + 8;
  const int version = p[0];
  base_ = 0;
  if (version == 0 || version == 1) {
    so_ = p[5];
    sl_ = p[6];
    if ((so_ != 4 && so_ != 8) || (sl_ != 4 && sl_ != 8)) bad("size of offsets/lengths");
    p += 8 + 4 + 4;  // versions..reserved, leaf/internal K, consistency flags
    if (version == 1) p += 4;
    if ((size_t)(p - buf_.data()) + 4 * so_ + 2 * so_ + 24 > buf_.size()) fail("%s: HDF5 file is truncated", path.c_str());
    base_ = off(p);
    off(p);  // free-space info
    const uint64_t eof = off(p);
    off(p);  // driver info
    off(p);  // root symbol table entry: link name offset
    root_ = off(p);
    if (base_ + eof > buf_.size())
      fail("%s: HDF5 file is truncated (%zu bytes, the superblock says %llu); re-download it", path.c_str(),
           buf_.size(), (unsigned long long)(base_ + eof));
  } else if (version == 2 || version == 3) {
    so_ = p[1];
    sl_ = p[2];
    if ((so_ != 4 && so_ != 8) || (sl_ != 4 && sl_ != 8)) bad("size of offsets/lengths");
    p += 4;
    base_ = off(p);
    off(p);  // superblock extension
    const uint64_t eof = off(p);
    root_ = off(p);
    if (base_ + eof > buf_.size())
      fail("%s: HDF5 file is truncated (%zu bytes, the superblock says %llu); re-download it", path.c_str(),
           buf_.size(), (unsigned long long)(base_ + eof));
  } else {
    bad("superblock version");
  }
}

// Header messages of one block. Version 1 envelopes: type u16, size u16, flags u8, 3 reserved;
// version 2: type u8, size u16, flags u8 (+ creation order u16 when the header tracks it).
void H5File::parse_messages(const uint8_t* p, size_t n, int version, bool creation_order, std::vector<Msg>& out,
                            std::vector<std::pair<uint64_t, uint64_t>>& cont) const {
  const uint8_t* end = p + n;
  const size_t hdr = version == 1 ? 8 : (creation_order ? 6 : 4);
  while ((size_t)(end - p) >= hdr) {
    const uint16_t type = version == 1 ? (uint16_t)rd(p, 2) : p[0];
    const uint16_t size = (uint16_t)rd(p + (version == 1 ? 2 : 1), 2);
    const uint8_t flags = p[version == 1 ? 4 : 3];
    p += hdr;
    if (p + size > end) bad("object header message overruns its block");
    if (flags & 2) bad("shared object header messages");
    if (type == 0x10) {
      if (size < (size_t)(so_ + sl_)) bad("continuation message too short");
      const uint8_t* q = p;
      uint64_t a = off(q), l = len(q);
      cont.push_back({a, l});
    } else {
      out.push_back({type, p, size});
    }
    p += size;
  }
}

std::vector<H5File::Msg> H5File::messages(uint64_t addr) const {
  std::vector<Msg> out;
  std::vector<std::pair<uint64_t, uint64_t>> cont;
  const uint8_t* p = at(addr, 16);
  if (memcmp(p, "OHDR", 4) == 0) {
    const uint8_t flags = p[5];
    size_t pos = 6;
    if (flags & 0x20) pos += 16;
    if (flags & 0x10) pos += 4;
    const int sz_bytes = 1 << (flags & 3);
    const uint8_t* q = at(addr, pos + sz_bytes);
    const uint64_t chunk = rd(q + pos, sz_bytes);
    pos += sz_bytes;
    if (chunk > buf_.size()) bad("object header chunk larger than the file");  // (chunk + 4 could wrap)
    const uint8_t* msgs = at(addr + pos, chunk + 4);
    parse_messages(msgs, chunk, 2, flags & 4, out, cont);
    for (size_t i = 0; i < cont.size(); i++) {
      if (i > 10000) bad("too many continuation blocks");
      const uint8_t* c = at(cont[i].first, cont[i].second);
      if (cont[i].second < 8 || memcmp(c, "OCHK", 4) != 0) bad("continuation block signature");
      parse_messages(c + 4, cont[i].second - 8, 2, flags & 4, out, cont);
    }
  } else if (p[0] == 1) {
    const uint64_t size = rd(p + 8, 4);
    parse_messages(at(addr + 16, size), size, 1, false, out, cont);
    for (size_t i = 0; i < cont.size(); i++) {
      if (i > 10000) bad("too many continuation blocks");
      parse_messages(at(cont[i].first, cont[i].second), cont[i].second, 1, false, out, cont);
    }
  } else {
    bad("object header version");
  }
  return out;
}

bool H5File::is_dataset(uint64_t obj) const {
  for (const Msg& m : messages(obj))
    if (m.type == 0x08) return true;
  return false;
}

bool H5File::is_group(uint64_t obj) const {
  for (const Msg& m : messages(obj))
    if (m.type == 0x11 || m.type == 0x06 || m.type == 0x02) return true;
  return false;
}

void H5File::symbol_table(uint64_t btree, uint64_t heap, std::vector<Link>& out, int depth,
                          std::set<uint64_t>& seen) const {
  if (depth > 32) bad("group B-tree too deep");
  // A node reached twice would make the walk exponential (a malicious file can point a node at itself).
  if (!seen.insert(btree).second) bad("group B-tree node reached twice");
  const uint8_t* h = at(heap, 8 + 2 * sl_ + so_);
  if (memcmp(h, "HEAP", 4) != 0) bad("local heap signature");
  const uint8_t* q = h + 8;
  const uint64_t heap_size = len(q);
  len(q);  // free list
  const uint64_t heap_data = off(q);
  const uint8_t* names = at(heap_data, heap_size);
  const uint8_t* t = at(btree, 8 + 2 * so_);
  if (memcmp(t, "TREE", 4) != 0) bad("group B-tree signature");
  if (t[4] != 0) bad("group B-tree node type");
  const int level = t[5];
  const int entries = (int)rd(t + 6, 2);
  const uint8_t* e = at(btree + 8 + 2 * so_, (uint64_t)(entries * 2 + 1) * (so_ + sl_));
  e += sl_;  // key 0
  for (int i = 0; i < entries; i++) {
    const uint64_t child = off(e);
    e += sl_;  // next key
    if (level > 0) {
      symbol_table(child, heap, out, depth + 1, seen);
      continue;
    }
    const uint8_t* s = at(child, 8);
    if (memcmp(s, "SNOD", 4) != 0) bad("symbol table node signature");
    const int nsym = (int)rd(s + 6, 2);
    const size_t entry_size = 2 * so_ + 4 + 4 + 16;
    const uint8_t* se = at(child + 8, (uint64_t)nsym * entry_size);
    for (int j = 0; j < nsym; j++) {
      const uint8_t* r = se + j * entry_size;
      const uint64_t name_off = off(r);
      const uint64_t obj = off(r);
      if (name_off >= heap_size) bad("symbol name outside the local heap");
      const char* nm = (const char*)names + name_off;
      size_t nl = strnlen(nm, heap_size - name_off);
      out.push_back({std::string(nm, nl), obj});
    }
  }
}

std::vector<H5File::Link> H5File::children(uint64_t obj) const {
  std::vector<Link> out;
  for (const Msg& m : messages(obj)) {
    if (m.type == 0x11) {
      if (m.n < (size_t)(2 * so_)) bad("symbol table message too short");
      const uint8_t* p = m.p;
      uint64_t bt = off(p), heap = off(p);
      std::set<uint64_t> seen;
      symbol_table(bt, heap, out, 0, seen);
    } else if (m.type == 0x06) {
      const uint8_t* p = m.p;
      const uint8_t* end = m.p + m.n;
      if (m.n < 2 || p[0] != 1) bad("link message version");
      const uint8_t flags = p[1];
      p += 2;
      int link_type = 0;
      if (flags & 0x08) link_type = *p++;
      if (flags & 0x04) p += 8;
      if (flags & 0x10) p++;
      const int lsz = 1 << (flags & 3);
      if (p + lsz > end) bad("link message");
      const uint64_t nlen = rd(p, lsz);
      p += lsz;
      if (p + nlen > end) bad("link message name");
      std::string name((const char*)p, nlen);
      p += nlen;
      if (link_type == 0) {
        if (p + so_ > end) bad("link message address");
        out.push_back({name, off(p)});
      }
    } else if (m.type == 0x02) {
      if (m.n < 2 || m.n < 2 + ((m.p[1] & 1) ? 8u : 0u) + so_) bad("link info message too short");
      const uint8_t* p = m.p + 2 + ((m.p[1] & 1) ? 8 : 0);
      if (off(p) != kUndef)
        bad("group with dense link storage (fractal heap); re-save the file with h5py's libver='earliest'");
    }
  }
  return out;
}

bool H5File::find(uint64_t obj, const std::string& path, uint64_t* out) const {
  uint64_t cur = obj;
  for (const std::string& part : split(path, '/')) {
    if (part.empty()) continue;
    bool found = false;
    for (const Link& l : children(cur))
      if (l.name == part) {
        cur = l.addr;
        found = true;
        break;
      }
    if (!found) return false;
  }
  *out = cur;
  return true;
}

namespace {
// Dataspace message: dimensions (an empty list for a scalar).
std::vector<int64_t> parse_space(const uint8_t* p, size_t n, int sl) {
  std::vector<int64_t> dims;
  if (n < 8) return dims;
  const int version = p[0], rank = p[1];
  const uint8_t* d = p + (version == 1 ? 8 : 4);
  if (version >= 2 && p[3] == 2) return {0};  // null dataspace
  for (int i = 0; i < rank; i++) {
    if ((size_t)(d + sl - p) > n) break;
    dims.push_back((int64_t)rd(d, sl));
    d += sl;
  }
  return dims;
}
}  // namespace

bool H5File::string_attr(uint64_t obj, const std::string& want, std::vector<std::string>* out) const {
  for (const Msg& m : messages(obj)) {
    if (m.type != 0x0C || m.n < 8) continue;
    const uint8_t* p = m.p;
    const int version = p[0];
    const size_t name_sz = rd(p + 2, 2), type_sz = rd(p + 4, 2), space_sz = rd(p + 6, 2);
    size_t pos = version == 3 ? 9 : 8;
    auto pad = [&](size_t v) { return version == 1 ? (v + 7) / 8 * 8 : v; };
    if (pos + pad(name_sz) > m.n) continue;
    std::string name((const char*)p + pos, strnlen((const char*)p + pos, name_sz));
    pos += pad(name_sz);
    if (name != want) continue;
    if (pos + pad(type_sz) + pad(space_sz) > m.n) bad("attribute message");
    H5Type t = parse_type(p + pos, type_sz);
    pos += pad(type_sz);
    std::vector<int64_t> dims = parse_space(p + pos, space_sz, sl_);
    pos += pad(space_sz);
    if (t.cls != 3) return false;  // not a fixed-length string (e.g. variable-length)
    uint64_t count = 1;
    for (int64_t d : dims)
      if (d < 0 || __builtin_mul_overflow(count, (uint64_t)d, &count)) bad("attribute dimensions");
    if (t.size == 0 || count > (m.n - pos) / t.size) bad("attribute data");
    out->clear();
    for (uint64_t i = 0; i < count; i++) {
      const char* s = (const char*)p + pos + i * t.size;
      size_t l = strnlen(s, t.size);
      while (l > 0 && s[l - 1] == ' ') l--;
      out->push_back(std::string(s, l));
    }
    return true;
  }
  return false;
}

H5File::Dataset H5File::read_dataset(uint64_t obj, const std::string& what) const {
  std::vector<Msg> ms = messages(obj);
  const Msg *space = nullptr, *type = nullptr, *layout = nullptr, *filters = nullptr;
  for (const Msg& m : ms) {
    if (m.type == 0x01) space = &m;
    if (m.type == 0x03) type = &m;
    if (m.type == 0x08) layout = &m;
    if (m.type == 0x0B) filters = &m;
  }
  if (!space || !type || !layout) fail("%s: %s is not a dataset", path_.c_str(), what.c_str());
  Dataset ds;
  ds.shape = parse_space(space->p, space->n, sl_);
  H5Type t = parse_type(type->p, type->n);
  if (t.cls != 0 && t.cls != 1) fail("%s: %s has a non-numeric element type (class %d)", path_.c_str(), what.c_str(), t.cls);
  if (t.big_endian) fail("%s: %s is big-endian; not supported", path_.c_str(), what.c_str());
  if (!(t.size == 1 || t.size == 2 || t.size == 4 || t.size == 8) || (t.cls == 1 && t.size < 4))
    fail("%s: %s has an unsupported element size %u", path_.c_str(), what.c_str(), t.size);
  uint64_t count = 1;
  for (int64_t d : ds.shape) {
    if (d < 0 || (d > 0 && count > (1ull << 40) / (uint64_t)d)) bad("dataset dimensions");
    count *= (uint64_t)d;
  }
  const uint64_t bytes = count * t.size;
  // Data not stored in the file (never written, or missing chunks) reads as zeros; deflate expands
  // at most about 1032 times, so a dataset bigger than that is a lie, refused before any allocation.
  const uint64_t most = (uint64_t)buf_.size() * 1032 + (1u << 20);
  if (bytes > most)
    fail("%s: %s claims %llu bytes of data, more than this %zu-byte file can hold (corrupt file)", path_.c_str(),
         what.c_str(), (unsigned long long)bytes, buf_.size());
  auto need = [&](const Msg* m, size_t k, const char* which) {
    if (m->n < k) bad(which);
  };
  std::vector<uint8_t> raw;
  need(layout, 2, "layout message too short");
  const uint8_t* L = layout->p;
  const int lver = L[0];
  auto lptr = L;
  if (lver == 3 || lver == 4) {
    const int cls = L[1];
    lptr = L + 2;
    if (cls == 0) {  // compact
      need(layout, 4, "layout message too short");
      const uint64_t sz = rd(lptr, 2);
      if (sz < bytes || 4 + sz > layout->n) bad("compact dataset size");
      raw.assign(lptr + 2, lptr + 2 + bytes);
    } else if (cls == 1) {  // contiguous
      need(layout, 2 + so_, "layout message too short");
      const uint64_t addr = off(lptr);
      if (addr == kUndef) {
        raw.assign(bytes, 0);  // never written: the fill value (zero)
      } else {
        const uint8_t* d = at(addr, bytes);
        raw.assign(d, d + bytes);
      }
    } else if (cls == 2 && lver == 3) {  // chunked, v1 B-tree
      need(layout, 3, "layout message too short");
      const int rank = L[2];  // dims + 1 (the element size)
      need(layout, 3 + so_ + 4 * (size_t)rank, "layout message too short");
      lptr = L + 3;
      const uint64_t bt = off(lptr);
      std::vector<uint64_t> cdims(rank);
      for (int i = 0; i < rank; i++) cdims[i] = rd(lptr + 4 * i, 4);
      const int nd = rank - 1;
      if (nd != (int)ds.shape.size()) bad("chunk rank");
      // Filter pipeline (applied in reverse on read).
      std::vector<int> fids;
      if (filters) {
        need(filters, 8, "filter pipeline message too short");
        const uint8_t* f = filters->p;
        const uint8_t* fend = f + filters->n;
        const int fver = f[0], nf = f[1];
        f += fver == 1 ? 8 : 2;
        for (int i = 0; i < nf; i++) {
          if (f + 8 > fend) bad("filter pipeline");
          const int id = (int)rd(f, 2);
          size_t pos = 2, name_len = 0;
          if (fver == 1 || id >= 256) {
            name_len = rd(f + pos, 2);
            pos += 2;
          }
          pos += 2;  // flags
          const int nvals = (int)rd(f + pos, 2);
          pos += 2;
          if (fver == 1) name_len = (name_len + 7) / 8 * 8;
          pos += name_len + 4 * nvals;
          if (fver == 1 && (nvals & 1)) pos += 4;
          if (pos > (size_t)(fend - f)) bad("filter pipeline");
          f += pos;
          fids.push_back(id);
        }
      }
      for (int id : fids)
        if (id != 1 && id != 2)
          fail("%s: %s uses HDF5 filter %d; only deflate (gzip) and shuffle are supported", path_.c_str(), what.c_str(), id);
      raw.assign(bytes, 0);
      uint64_t chunk_elems = 1;
      for (int i = 0; i < nd; i++)
        if (cdims[i] == 0 || __builtin_mul_overflow(chunk_elems, cdims[i], &chunk_elems) || chunk_elems > most)
          bad("chunk dimensions");
      const uint64_t chunk_bytes = chunk_elems * t.size;
      if (chunk_bytes > most) bad("chunk dimensions");
      std::set<uint64_t> visited;  // B-tree nodes: each once (a node pointing at itself would never end)
      // Walk the B-tree (type 1: raw data chunks).
      std::vector<std::pair<uint64_t, int>> stack = {{bt, 0}};
      while (!stack.empty()) {
        auto [node, depth] = stack.back();
        stack.pop_back();
        if (depth > 64) bad("chunk B-tree too deep");
        if (!visited.insert(node).second) bad("chunk B-tree node reached twice");
        const uint8_t* tn = at(node, 8 + 2 * so_);
        if (memcmp(tn, "TREE", 4) != 0 || tn[4] != 1) bad("chunk B-tree signature");
        const int level = tn[5], entries = (int)rd(tn + 6, 2);
        const size_t key_size = 4 + 4 + 8 * (size_t)rank;
        const uint8_t* e = at(node + 8 + 2 * so_, (uint64_t)entries * (key_size + so_) + key_size);
        for (int i = 0; i < entries; i++) {
          const uint8_t* key = e + i * (key_size + so_);
          const uint8_t* cp = key + key_size;
          const uint64_t child = off(cp);
          if (level > 0) {
            stack.push_back({child, depth + 1});
            continue;
          }
          const uint64_t csize = rd(key, 4);
          const uint32_t mask = (uint32_t)rd(key + 4, 4);
          std::vector<uint64_t> origin(nd);
          for (int d = 0; d < nd; d++) origin[d] = rd(key + 8 + 8 * d, 8);
          const uint8_t* cdata = at(child, csize);
          std::vector<uint8_t> chunk(cdata, cdata + csize);
          for (int fi = (int)fids.size() - 1; fi >= 0; fi--) {
            if (mask & (1u << fi)) continue;
            if (fids[fi] == 1) {
              std::vector<uint8_t> outb(chunk_bytes);
              uLongf dl = (uLongf)chunk_bytes;
              if (uncompress(outb.data(), &dl, chunk.data(), (uLong)chunk.size()) != Z_OK || dl != chunk_bytes)
                fail("%s: %s: a deflate-compressed chunk is corrupt", path_.c_str(), what.c_str());
              chunk.swap(outb);
            } else {  // shuffle: bytes were grouped by significance
              if (chunk.size() != chunk_bytes) bad("shuffled chunk size");
              std::vector<uint8_t> outb(chunk_bytes);
              for (uint64_t el = 0; el < chunk_elems; el++)
                for (uint32_t b = 0; b < t.size; b++) outb[el * t.size + b] = chunk[b * chunk_elems + el];
              chunk.swap(outb);
            }
          }
          if (chunk.size() < chunk_bytes) bad("chunk smaller than its dimensions");
          // Copy the chunk's in-bounds part into place.
          std::vector<uint64_t> idx(nd, 0);
          for (uint64_t el = 0; el < chunk_elems; el++) {
            uint64_t rem = el, dst = 0;
            bool inside = true;
            for (int d = nd - 1; d >= 0; d--) {
              idx[d] = rem % cdims[d];
              rem /= cdims[d];
            }
            for (int d = 0; d < nd; d++) {
              const uint64_t g = origin[d] + idx[d];
              if (g >= (uint64_t)ds.shape[d]) {
                inside = false;
                break;
              }
              dst = dst * (uint64_t)ds.shape[d] + g;
            }
            if (inside) memcpy(&raw[dst * t.size], &chunk[el * t.size], t.size);
          }
        }
      }
    } else {
      fail("%s: %s uses an HDF5 storage layout this reader does not support (version %d, class %d); re-save it with "
           "h5py's libver='earliest'",
           path_.c_str(), what.c_str(), lver, cls);
    }
  } else if (lver == 1 || lver == 2) {
    need(layout, 8 + so_, "layout message too short");
    const int cls = L[2];
    lptr = L + 8;
    if (cls != 1) bad("old-style non-contiguous layout");
    const uint64_t addr = off(lptr);
    const uint8_t* d = at(addr, bytes);
    raw.assign(d, d + bytes);
  } else {
    bad("layout message version");
  }
  ds.data.resize(count);
  for (uint64_t i = 0; i < count; i++) ds.data[i] = element_to_float(&raw[i * t.size], t);
  return ds;
}

}  // namespace tl
