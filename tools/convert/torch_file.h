// torch_file.h: reads PyTorch checkpoints without Python: the legacy serialisation that
// torchvision's vgg16-397923af.pth uses (a stream of pickles followed by raw storages) and the
// zip archives torch.save writes since 1.6 (data.pkl + data/<key>). A small pickle machine
// handles the opcodes torch emits (protocols 2-5); tensors are rebuilt from their storage, offset,
// size and stride. Only float storages are converted (float32, float64, float16).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tl {

struct TorchTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;  // C order
};

// key -> tensor, for every tensor in the top-level dict (a state_dict, or a dict holding one
// under "state_dict" / "model"). Throws tl::Error naming the file on anything unreadable.
std::map<std::string, TorchTensor> read_torch_checkpoint(const std::string& path);

bool looks_like_torch_legacy(const uint8_t* p, size_t n);

}  // namespace tl
