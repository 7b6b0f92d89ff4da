/*  eval: `strata eval`, offline evaluation of the data in a cluster's store under the
    leave-one-out, full-catalogue protocol (trainer/evaluate.h), with every baseline
    tuned on the validation split and measured on the test split in the same run.
*/
#ifndef STRATA_EVAL_H
#define STRATA_EVAL_H

//  The command's entry point; returns the process exit code.
int eval_main (int argc, char **argv);

#endif
