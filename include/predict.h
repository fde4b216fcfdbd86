/* predict.h: classifying image files with a trained model (`convnet-dist predict`).
 *
 * Each image is decoded and resized to the model's input (image_load_file), scaled with the
 * job's data.scale / data.offset, run through model_forward (inference mode) in batches of
 * up to m->max_batch, and turned into probabilities with loss_probabilities (softmax, or
 * sigmoid for a 1-unit output).
 *
 * Class names: for `format = images` jobs the sorted, non-hidden sub-folder names of
 * job->data.train_dir (as images_load_dir numbers the labels); for a 1-unit sigmoid output
 * those two folders name class 0 and 1; for IDX jobs, or when the folder cannot be listed or
 * its count does not fit the model (a note goes to `err`), "0".."K-1".
 */
#ifndef CONVNET_PREDICT_H
#define CONVNET_PREDICT_H

#include <stdio.h>

#include "common.h"
#include "job.h"
#include "model.h"

/* Class names for the model's output (see above): *n_classes names, malloc'd; free with
 * predict_free_class_names. Notes about falling back to numbers go to err (may be NULL). */
char **predict_class_names(const Model *m, const Job *job, int *n_classes, FILE *err);
void predict_free_class_names(char **names, int n);

/* Classify paths[0..n) and print to out, per image, in input order:
 *   text, top <= 1:  "PATH: CLASS (p=0.9731)"
 *   text, top K > 1: that line, then K lines "  1. CLASS (p=0.9731)" ... best first
 *   json:            one object per line: {"path":..,"class":..,"probability":..,
 *                    "top":[{"class":..,"probability":..},...]} (top holds max(top,1) entries,
 *                    at most the class count); an unreadable image gives
 *                    {"path":..,"error":".."} in its place.
 * A binary (1-unit sigmoid) model reports class 1 when p > 0.5, else class 0, with
 * probability max(p, 1 - p).
 * An image that cannot be read or decoded is reported on err ("convnet-dist: " + the reason,
 * naming the file) and skipped; the others are still classified.
 * Returns 0 when every image was classified; the number of images that could not be read
 * (> 0, with e set to a summary naming the first of them); or -1 with e set when nothing
 * could be done (the model's input or output does not fit, n < 0). */
int predict_images(Model *m, const Job *job, char *const *paths, int n, int top, int json,
                   FILE *out, FILE *err, Err *e);

#endif
