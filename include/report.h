/* report.h: the per-epoch history: a CSV log in the shape of Keras' CSVLogger, its reload,
 * and a standalone SVG chart of training and validation accuracy and loss (the book's
 * figures 8.9 / 8.11). Written by rank 0.
 *
 * CSV: header "epoch,accuracy,loss,val_accuracy,val_loss,lr,images_per_s,seconds", one row
 * per epoch, epoch 0-based as Keras writes it; numbers in the shortest form that reads back
 * to the same double; val_* fields empty when there is no validation (NaN in EpochRecord),
 * other non-finite values as "nan" / "inf". The chart numbers epochs from 1, as the book's
 * plots do (range(1, len(loss) + 1)).
 */
#ifndef CONVNET_REPORT_H
#define CONVNET_REPORT_H

#include "common.h"

/* learning_rate: Keras 3's name for the optimizer's rate in the logs (ReduceLROnPlateau and
 * LearningRateScheduler put it there); files written before it was renamed say "lr" and are
 * still read and appended to, in the same column. */
#define CSVLOG_HEADER "epoch,accuracy,loss,val_accuracy,val_loss,learning_rate,images_per_s,seconds"
#define CSVLOG_HEADER_V1 "epoch,accuracy,loss,val_accuracy,val_loss,lr,images_per_s,seconds"

typedef struct {
    int epoch; /* 0-based */
    double accuracy, loss;
    double val_accuracy, val_loss; /* NAN when the job has no validation data */
    double lr;
    double images_per_s; /* global training throughput of the epoch */
    double seconds;      /* wall time of the epoch, validation included */
} EpochRecord;

/* Append r as one row to path (flushed and fsync'd), creating the file with the header when
 * it is absent or empty. A torn last line (a crash mid-append) is cut off first. A file whose
 * first line is not the header is refused (it is not ours). 0, or -1 with e set. */
int csvlog_append(const char *path, const EpochRecord *r, Err *e);

/* Drop every row whose epoch is >= epoch (and any torn or unparsable row), keeping the
 * header and the earlier rows; rewrites the file atomically. For a resume at `epoch`. A
 * missing file is not an error (nothing to drop). 0, or -1 with e set. */
int csvlog_truncate_from(const char *path, int epoch, Err *e);

/* Read the rows of a CSV log into *rows (malloc'd, caller frees), *n rows. A torn last line
 * is ignored; any other malformed line is an error naming path:line. 0, or -1 with e set. */
int history_read_csv(const char *path, EpochRecord **rows, int *n, Err *e);

/* Write the two-panel SVG chart ("Training and validation accuracy" / "... loss"), training
 * as dots, validation as a line, written atomically. n >= 0; non-finite values are left out
 * of the chart. title (may be NULL) goes above both panels. 0, or -1 with e set. */
int history_write_svg(const char *path, const EpochRecord *rows, int n, const char *title, Err *e);

#endif
