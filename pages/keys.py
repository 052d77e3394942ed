"""Every ``st.session_state`` key the pages read or write themselves, defined once.

A widget's own key (``key="p2_sampler"``, ``key="results_tab"``, ...) stays beside the widget on its page: it is
the widget's identity and Streamlit keeps its value. Where code sets a widget's value from elsewhere, the key is
here too (``RACE_CHOICE``, ``PART1_DETAIL_RUN``, ``P2_CHOICE``, ``P2_SAMPLER``).
"""

# The whole app (pages.common, app.py)
ENTERED_THROUGH_APP = "entered_through_app"  # app.py has run for this session (see common.enter_through_app)
SESSION_DATA = "session_dataset"  # this session's uploaded data set (common.SessionData)
WORKERS = "workers"  # this session's study jobs on the compute pool by name (fetal_core.pool.StudyRun)

# Home
HOME_UPLOAD_MESSAGE = "home_upload_message"  # the "using your upload" note, shown once after the rerun

# Part I
MANUAL_RUNS = "manual_runs"  # every run record of the session (fetal_core.manual.make_run_record)
BEST_MANUAL_RUN = "best_manual_run"  # the best finished run (Part II draws it as "hand vs machine")
PART1_LIVE_RUN = "part1_live_run"  # the run being trained, kept so that an interrupted run's curve survives
PART1_CONFIG = "part1_config"  # the last submitted settings (widget state is lost on a page switch)
LOAD_INTO_PART1 = "load_into_part1"  # a TrainConfig dict handed over by Part II ("use these settings")
PART1_LINK_READ = "part1_link_read"  # the shared link's settings were applied (once per session)
PART1_RUNS_SEEN = "part1_runs_seen"  # run count when the detail selector last moved to the newest run
PART1_DETAIL_RUN = "part1_detail_run"  # widget: which run's details are shown

# Part II
P2_GUEST = "p2_guest"  # a random tag naming a session without nickname (its own Part II study)
P2_FOLLOWED = "part2_study"  # the study this session is watching
P2_CHOICE = "p2_choice"  # widget: the study chosen in the selector
P2_PENDING_CHOICE = "p2_pending_choice"  # a study just started, to select before the selector exists
P2_SAMPLER = "p2_sampler"  # widget: the sampler of a new study (Part II fills its form from a chosen study)
P2_CLASS_STUDY_OFFERED = "p2_class_study_offered"  # the class study preselected once for this session
P2_RUNNING_AT_RENDER = "p2_running_at_render"  # whether the worker ran when the page was drawn

# Results
RESULTS_STUDY = "results_study"  # the study to preselect (Part II sets it for "Review on Results")
UPLOAD_FOLDER = "upload_folder"  # SessionUploads: this session's upload folder, deleted with the session
UPLOAD_FOLDER = "upload_folder"  # name of this session's upload folder (made on its first upload)
RESULTS_UPLOAD_COPY = "results_upload_copy"  # (digest, url, storage, error) of this session's study file
RESULTS_IMPORTANCES_SHOWN = "results_importances_shown"  # key of the importances last drawn in this session

# Strategy race
RACE_CHOICE = "race_choice"  # widget: the race shown
RACE_ERROR = "race_error"  # why the last start failed, shown once

# Class mode (pages/class_mode.py, pages/instructor.py, pages/leaderboard.py)
NICKNAME = "nickname"  # this browser session's checked nickname
INSTRUCTOR_TOKEN = "instructor_token"  # a keyed hash of the instructor key, never the key itself
LESSON_RECORDING = "lesson_recording"  # (run label, Future) of the Part I run being written to the lesson
BOARD_DRAWN_FOR = "board_drawn_for"  # the storage fingerprint the leaderboard on screen was drawn for
NICK_INPUT = "nick_input"  # widget: the nickname being typed
NICK_ERROR = "nick_error"  # why the typed nickname was refused, shown once
INSTRUCTOR_KEY_INPUT = "instructor_key_input"  # widget: the instructor key being typed (cleared at once)
INSTRUCTOR_REFUSED = "instructor_refused"  # a wrong key was typed, said once
INSTRUCTOR_MESSAGE = "instructor_message"  # the result of the last instructor action, shown once
