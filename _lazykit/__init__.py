"""Internal plumbing shared by lazykit's packages (kernels, nets, compare); no public API and no imports of them."""
