// augment.h: data augmentation as Keras' ImageDataGenerator does it (the tutorial's settings:
// rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
// zoom_range=0.2, horizontal_flip=True, fill_mode='nearest').
//
// The transform is Keras' apply_affine_transform: rotation, shift, shear and zoom matrices
// composed in that order about the image centre, sampled with bilinear interpolation
// (interpolation_order=1, Keras' default) and edge replication ('nearest' fill), then the
// horizontal flip. As in Keras, shear_range is an angle in degrees (0.2 degrees is slight), and
// augmentation is applied to the resized image before preprocessing.
#pragma once
#include <cstdint>

#include "host/core/common.h"
#include "host/io/image.h"

namespace tl {

struct AugmentConfig {
  double rotation = 40, width_shift = 0.2, height_shift = 0.2, shear = 0.2, zoom = 0.2;
  bool hflip = true;
};

struct AugmentParams {
  double theta = 0;     // degrees, counter-clockwise
  double tx = 0;        // shift along rows (height), pixels
  double ty = 0;        // shift along columns (width), pixels
  double shear = 0;     // degrees
  double zx = 1, zy = 1;
  bool flip = false;
};

// Keras' get_random_transform with our generator: theta ~ U(-rotation, rotation), tx ~
// U(-height_shift, height_shift) * h, ty ~ U(-width_shift, width_shift) * w, shear ~
// U(-shear, shear), zx, zy ~ U(1 - zoom, 1 + zoom), flip with probability 1/2.
AugmentParams draw_augment(const AugmentConfig& c, Rng& rng, int h, int w);

// out: h x w x 3 float RGB in [0, 255], the transformed image.
void apply_augment(const Image& in, const AugmentParams& p, float* out);

// The per-sample generator: a pure function of (seed, epoch, sample id).
Rng augment_rng(uint64_t seed, uint64_t epoch, uint64_t id);

}  // namespace tl
