// plot.h: training curves as a PNG, like the tutorial's figure: accuracy and loss per epoch,
// training and validation, with axes, ticks, a legend and titles. Drawn here (lines, rectangles,
// stb_easy_font text) and written with stb_image_write.
#pragma once
#include <string>
#include <vector>

#include "host/io/image.h"

namespace tl {

struct Series {
  std::string name;
  std::vector<double> y;  // one value per epoch (NaN: missing)
  unsigned char rgb[3];
  bool dashed = false;
};

struct Panel {
  std::string title, ylabel;
  std::vector<Series> series;
  int best_epoch = 0;  // marked with a vertical line when > 0
  // The axis never extends past these (accuracy: [0, 1]; loss: >= 0).
  double floor = -1e300, ceiling = 1e300;
  // A lone value far above the rest (a large first-epoch training loss) is drawn at the top edge,
  // labelled with its value, instead of squashing the others.
  bool clip_outlier = false;
};

// The y axis a panel gets: [lo, hi] in steps of step, padded around the data, within [floor,
// ceiling], with a lone outlier left off the scale when clip_outlier.
void panel_range(const Panel& p, double* lo, double* hi, double* step);

// Panels side by side; x is the epoch (1..n).
void plot_panels(const std::string& path, const std::string& title, const std::vector<Panel>& panels);

// A contact sheet of photos (fast.ai's plot_top_losses): up to 16 in a 4-column grid, each fitted
// into its cell and labelled with two lines (e.g. "truth cat  p(dog) 0.97" and the file name); a
// red frame marks wrong predictions.
struct SheetItem {
  Image img;  // decoded RGB (any size)
  std::string line1, line2;
  bool wrong = false;
};
void draw_sheet(const std::string& path, const std::string& title, const std::vector<SheetItem>& items);

// The cubehelix colour map (D. A. Green 2011: brightness rises monotonically, so it reads in grey
// too): start 0.5, rotations -1.5, hue 1.2, gamma 1; t in [0, 1] -> RGB.
void cubehelix(double t, uint8_t rgb[3]);

// One explained photo (tl_predict --explain): the photo with its heatmap (heatmap_overlay), shown at
// twice its size, a colour bar (cold: ignored, hot: what the score rests on), and up to three lines
// of text; a red frame when the prediction is wrong, green when right, none when unknown (-1).
void draw_explained(const std::string& path, const Image& overlay, const std::string& line1, const std::string& line2,
                    const std::string& line3, int right);

}  // namespace tl
