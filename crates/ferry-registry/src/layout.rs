pub struct LayoutRegistry;
