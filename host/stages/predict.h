// predict.h: classifies images with a trained head on top of the frozen base, using exactly the
// preprocessing recorded in the model (image size, resize mode, input convention), never one
// specified by hand (tl_predict).
#pragma once
#include "host/model/recipe.h"
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "host/model/features.h"
#include "host/model/gradcam.h"
#include "host/model/head.h"
#include "host/io/image.h"

namespace tl {

struct PredictInput {
  std::string name;                               // what the output calls it
  std::function<std::vector<uint8_t>()> read;     // its bytes
};

// Files, folders (recursively, sorted) and zip archives -> inputs. Unknown paths throw.
std::vector<PredictInput> expand_inputs(const std::vector<std::string>& paths);

struct Prediction {
  std::string name;
  bool ok = false;
  double p = 0;        // probability of class 1 (dog)
  std::string error;   // why not, when !ok
};

// The class a file's path says it is, as tl_cache reads labels: a folder named after a class (or its
// plural, any case), or a Kaggle name "cat.N.jpg"; -1 when the path says nothing.
int label_from_path(const std::string& path, const std::vector<std::string>& classes);

// Accuracy, log loss (plain and clipped to [clip, 1 - clip]) and the confusion matrix of the
// predictions whose paths carry a label, as text ("" when none does); *labelled is their count.
std::string labelled_report(const std::vector<Prediction>& res, const std::vector<std::string>& classes, double clip,
                            int* labelled);

// A photo explained by Grad-CAM (Predictor::explain).
struct Explained {
  bool ok = false;
  std::string error;
  Image photo;    // as the model saw it (decoded, resized by the recipe)
  Image overlay;  // the photo with the heatmap over it
  CamResult cam;  // the map before upsampling, and the logit
};

class Predictor {
 public:
  // weights may be empty: the file the model's features were made with.
  // precision: the conv base's arithmetic, "" for the one the model's features were made with (any
  // other is refused: the head was trained on those features).
  Predictor(const std::string& model_path, const std::string& weights_path, Device d, int batch, bool tta,
            const std::string& precision = "");
  ~Predictor();
  std::vector<Prediction> run(const std::vector<PredictInput>& inputs, bool progress = false);
  const std::vector<std::string>& classes() const { return classes_; }
  std::string describe() const { return desc_; }
  int image_size() const { return size_; }
  // Grad-CAM at the conv layer named layer (block5_conv3, ...) of inputs[which[i]], in batches: one
  // forward pass and one backward pass above the layer per photo (gradcam.h).
  std::vector<Explained> explain(const std::vector<PredictInput>& inputs, const std::vector<size_t>& which,
                                 const std::string& layer, bool progress = false);
  // The whole classifier (base, input convention, head) as an ONNX model (host/model/onnx_export.h).
  std::vector<uint8_t> onnx() const;

 private:
  ModelFile model_;
  VggWeights weights_;
  std::unique_ptr<FeatureExtractor> fx_;
  std::unique_ptr<Head> head_;
  std::unique_ptr<GradCam> cam_;
  int batch_, size_;
  bool tta_;
  InputRecipe recipe_;
  std::vector<std::string> classes_ = {"cat", "dog"};
  std::string desc_;
};

// The Kaggle submission id of a file named N.jpg (its basename's number), or -1.
long kaggle_id(const std::string& name);

}  // namespace tl
