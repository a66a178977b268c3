// gradcam.h: where the classifier looks (Grad-CAM, Selvaraju et al. 2017). For the predicted class's
// score s (the logit z for dog, -z for cat), the gradient of s with respect to one conv layer's maps
// A (after its ReLU), averaged over the map's pixels, weights each channel:
//   cam[y,x] = ReLU( sum_c alpha_c A[y,x,c] ),  alpha_c = mean_{y,x} ds/dA[y,x,c].
// One forward pass through the base (the layers up to the map, then the ones above it and the head)
// and one backward pass through the layers above the map (input gradients only) per batch.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "host/core/tensor.h"
#include "host/io/image.h"
#include "host/io/plot.h"
#include "host/io/weights.h"

namespace tl {

class Head;
class VggBase;
class ConvBlock;

struct CamResult {
  int h = 0, w = 0;        // the explained map's size (14x14 at block5_conv3 for 224x224 photos)
  std::vector<float> cam;  // h * w, >= 0
  float logit = 0;         // the head's logit for the photo (p(dog) = sigmoid(logit))
};

class GradCam {
 public:
  // layer: a conv layer's Keras name (block5_conv3 by default in tl_predict). head: on device d.
  GradCam(const VggWeights& w, Head& head, Device d, Precision p, const std::string& layer);
  ~GradCam();
  // x: n preprocessed images [n, s, s, 3] on the host -> one result per image.
  std::vector<CamResult> explain(const float* x, int n, int image_size);
  const std::string& layer() const { return layer_; }

 private:
  Head& head_;
  Device device_;
  std::string layer_;
  std::unique_ptr<VggBase> lower_;
  std::unique_ptr<ConvBlock> upper_;
};

// The conv layer names GradCam accepts, for errors and --help.
std::string conv_layer_names(const VggWeights& w);

// cam (h x w) scaled to 0..255 by its maximum (all zero when the maximum is 0), rounded, then resized
// to out_w x out_h with Pillow's BILINEAR filter (resize_image, bit for bit).
std::vector<uint8_t> heatmap_upsampled(const std::vector<float>& cam, int h, int w, int out_w, int out_h);
// The photo (as the model saw it) with the heatmap laid over it in cubehelix colours (plot.h): the map's colour at 20% opacity
// where it is 0 (dark: the model ignored it) rising to 65% where it is hottest.
Image heatmap_overlay(const Image& photo, const std::vector<uint8_t>& heat);

}  // namespace tl
