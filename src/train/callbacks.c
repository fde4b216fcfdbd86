/* callbacks.c: ReduceLROnPlateau's keys and decisions, line by line Keras 3's on_epoch_end
 * (see callbacks.h). */
#include "callbacks.h"

#include <math.h>
#include <string.h>

int plateau_configure(IniFile *ini, Section *s, PlateauCfg *c, Err *e) {
    memset(c, 0, sizeof *c);
    if (!s) return 0;
    static const char *const monitors[] = {"val_loss", "val_accuracy", "loss", "accuracy", NULL};
    static const char *const modes[] = {"auto", "min", "max", NULL};
    int mode;
    c->enabled = 1;
    if (sec_get_enum(ini, s, "monitor", 0, 0, monitors, &c->monitor, e) ||
        sec_get_double(ini, s, "factor", 0, 0.1, 0.0, 1.0, &c->factor, e) ||
        sec_get_int(ini, s, "patience", 0, 10, 0, 1 << 20, &c->patience, e) ||
        sec_get_enum(ini, s, "mode", 0, 0, modes, &mode, e) ||
        sec_get_double(ini, s, "min_delta", 0, 1e-4, 0.0, 1e30, &c->min_delta, e) ||
        sec_get_int(ini, s, "cooldown", 0, 0, 0, 1 << 20, &c->cooldown, e) ||
        sec_get_double(ini, s, "min_lr", 0, 0.0, 0.0, 1e3, &c->min_lr, e))
        return -1;
    if (c->factor >= 1.0) { /* Keras raises the same */
        err_set(e,
                "%s:%d: [reduce_lr_on_plateau] factor must be < 1 (new lr = lr * factor), got %g",
                ini_section_file(ini, s), s->line, c->factor);
        return -1;
    }
    /* Keras's auto: max when the monitored name contains "acc" */
    c->higher = mode == 2 || (mode == 0 && (c->monitor == 1 || c->monitor == 3));
    return sec_check_unused(ini, s, e);
}

void plateau_reset(const PlateauCfg *c, PlateauState *st, double lr) {
    st->lr = lr;
    st->best = c->higher ? -INFINITY : INFINITY;
    st->wait = 0;
    st->cooldown_counter = 0;
}

/* Keras's monitor_op: np.less(a, best - min_delta) or np.greater(a, best + min_delta); false
 * for NaN. */
static int improves(const PlateauCfg *c, double a, double best) {
    return c->higher ? a > best + c->min_delta : a < best - c->min_delta;
}

int plateau_update(const PlateauCfg *c, PlateauState *st, double current) {
    if (st->cooldown_counter > 0) {
        st->cooldown_counter--;
        st->wait = 0;
    }
    if (improves(c, current, st->best)) {
        st->best = current;
        st->wait = 0;
        return 0;
    }
    if (st->cooldown_counter > 0) return 0;
    st->wait++;
    if (st->wait < c->patience) return 0;
    /* Keras compares the float32 rate with np.float32(min_lr), then assigns the product to the
     * optimizer's float32 variable; wait keeps counting when the floor stops a reduction */
    if (!((float)st->lr > (float)c->min_lr)) return 0;
    st->lr = (float)fmax(st->lr * c->factor, c->min_lr);
    st->cooldown_counter = c->cooldown;
    st->wait = 0;
    return 1;
}
